from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every SAE test runs on one thread (see the root conftest)."""


def _make_planted(n: int = 3000, d: int = 16, n_atoms: int = 64, active: int = 3, seed: int = 0):
    """Cells as non-negative combinations of ``active`` of ``n_atoms`` random unit atoms."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, n_atoms))
    for i in range(n):
        codes[i, rng.choice(n_atoms, active, replace=False)] = rng.uniform(0.5, 2.0, active)
    return (codes @ atoms).astype(np.float32), atoms


def _best_cosine(sae, atoms: np.ndarray) -> float:
    """Mean over true atoms of the best cosine similarity with a decoder row."""
    w = sae.W_dec.detach().cpu().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return float((atoms @ w.T).max(1).mean())


@pytest.fixture(scope="session")
def make_planted():
    """The planted-dictionary generator ``make_planted(n, d, n_atoms, active, seed) -> (x, atoms)``."""
    return _make_planted


@pytest.fixture(scope="session")
def best_cosine():
    """``best_cosine(sae, atoms)``: mean over atoms of the best cosine with a decoder row."""
    return _best_cosine

"""Small simulated data shared by the simulation tests (scaled-down large preset)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import sclens as sl


@pytest.fixture(scope="module")
def small_large():
    """The large preset scaled down: 2,000 cells, 500 genes, 20 programs."""
    return sl.sim.simulate(preset="large", n_cells=2000, n_genes=500, n_programs=20, random_state=0)


@pytest.fixture
def planted(small_large):
    """Copy whose 'SAE' activations are the true X'' (clipped at 0), stored as CSR like fit_sae does."""
    adata = small_large.copy()
    adata.obsm["X_sae"] = sparse.csr_matrix(np.clip(adata.obsm["X_celltype_altered"], 0, None), dtype=np.float32)
    return adata


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every simulation test runs on one thread (see the root conftest)."""

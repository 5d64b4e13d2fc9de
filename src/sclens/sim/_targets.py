"""Where the simulation's variable families live in the AnnData, and helpers shared by the metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from .._utils import as_dense_float32, get_layer

# family name -> obsm key (or "layers:<name>" for a layer); order is the paper's (Y closest).
FAMILIES: dict[str, str] = {
    "Y": "layers:counts",
    "X''": "X_celltype_altered",
    "X'": "X_batch_altered",
    "A": "X_celltype_mask",
    "B": "X_batch_shift",
    "X": "X_programs",
}


def resolve_targets(adata: AnnData, targets: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Map family names to storage keys; check they exist before anything is computed."""
    if targets is None:
        targets = list(FAMILIES)
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(targets, Mapping):
        spec = dict(targets)
    else:
        unknown = [t for t in targets if t not in FAMILIES]
        if unknown:
            msg = (
                f"Unknown variable families {unknown}; use {list(FAMILIES)} or a dict "
                "{name: obsm key or 'layers:<name>'}."
            )
            raise ValueError(msg)
        spec = {t: FAMILIES[t] for t in targets}
    for name, where in spec.items():
        if where.startswith("layers:"):
            get_layer(adata, where.split(":", 1)[1], what=f"variable {name!r}")
        elif where not in adata.obsm:
            msg = (
                f"Variable {name!r}: `adata.obsm[{where!r}]` not found; simulate the data with "
                "`sl.sim.simulate` or pass targets={name: obsm key}."
            )
            raise KeyError(msg)
    return spec


def target_matrix(adata: AnnData, where: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Dense float32 (cells x variables) matrix of one family, optionally for a subset of cells."""
    x: Any = adata.layers[where.split(":", 1)[1]] if where.startswith("layers:") else adata.obsm[where]
    if hasattr(x, "to_numpy") and hasattr(x, "columns"):
        x = x.to_numpy()
    if rows is not None:
        x = x[rows]
    return as_dense_float32(x, name=f"variable matrix {where!r}")


def subsample(n: int, max_cells: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_cells`` cells (all cells when ``None``)."""
    if max_cells is None or max_cells >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_cells), replace=False))


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm (so ``z1.T @ z2`` is Pearson r); mask of non-constant columns."""
    x = np.asarray(x, dtype=np.float64)
    z = x - x.mean(axis=0)
    norm = np.linalg.norm(z, axis=0)
    ok = norm > 1e-8 * np.sqrt(x.shape[0])
    z[:, ok] /= norm[ok]
    z[:, ~ok] = 0.0
    return z, ok


def correlation(a: np.ndarray, b: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """Pearson r between every column of ``a`` and every column of ``b`` (NaN for constant columns)."""
    za, oka = standardize(a)
    out = np.empty((a.shape[1], b.shape[1]))
    for start in range(0, b.shape[1], chunk):
        zb, okb = standardize(b[:, start : start + chunk])
        r = za.T @ zb
        r[~oka] = np.nan
        r[:, ~okb] = np.nan
        out[:, start : start + chunk] = r
    return out

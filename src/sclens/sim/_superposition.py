"""How linearly recoverable each hidden variable is from an embedding (the paper's Figure 1C)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._utils import as_dense_float32, check_adata, get_rep, resolve_seed
from ._targets import resolve_targets, subsample, target_matrix


def _heldout_r2(emb: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per-column R^2 on the held-out cells of an ordinary least-squares fit on the training cells."""
    design = np.hstack([emb, np.ones((emb.shape[0], 1))]).astype(np.float64)
    y = y.astype(np.float64)
    coef, *_ = np.linalg.lstsq(design[train], y[train], rcond=None)
    test = ~train
    pred = design[test] @ coef
    sse = ((y[test] - pred) ** 2).sum(axis=0)
    sst = ((y[test] - y[test].mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - sse / sst
    r2[sst <= 1e-12] = np.nan
    return r2


@doc_params()
def superposition_fit(
    adata: AnnData,
    *,
    use_rep: str = "X_ae",
    targets: Sequence[str] | Mapping[str, str] | None = None,
    test_fraction: float = 0.2,
    max_cells: int | None = None,
    random_state: int | None = 0,
) -> pd.DataFrame:
    r"""Held-out :math:`R^2` of a linear regression from the embedding to each hidden variable.

    For every variable :math:`v` (one column of a family such as X''), an ordinary least-squares
    fit :math:`v \approx E w + w_0` on the training cells is scored on held-out cells as
    :math:`R^2 = 1 - \sum (v - \hat v)^2 / \sum (v - \bar v)^2`. A variable that the model holds
    "in superposition" is a linear direction of the embedding and gets an :math:`R^2` near 1.

    Parameters
    ----------
    {adata}
    {use_rep}
    targets
        Variable families to score: names among ``"Y"``, ``"X''"``, ``"X'"``, ``"A"``, ``"B"``,
        ``"X"`` (default all), or a dict ``{{name: obsm key or "layers:<name>"}}``.
    test_fraction
        Fraction of cells held out for scoring.
    max_cells
        Use a random subset of at most this many cells (``None``: all).
    {random_state}

    Returns
    -------
    Tidy DataFrame, one row per variable: ``family``, ``variable`` (column index in the family),
    ``r2`` (NaN for a variable constant on the held-out cells), ``n_train``, ``n_test``.
    """
    check_adata(adata)
    if not 0 < test_fraction < 1:
        msg = f"test_fraction must be in (0, 1), got {test_fraction}."
        raise ValueError(msg)
    spec = resolve_targets(adata, targets)
    seed = resolve_seed(random_state)
    rows = subsample(adata.n_obs, max_cells, seed)
    emb = as_dense_float32(get_rep(adata, use_rep)[rows], name=f"embedding obsm[{use_rep!r}]")
    n = rows.size
    n_test = max(1, round(test_fraction * n))
    if n - n_test <= emb.shape[1] + 1:
        msg = f"{n - n_test} training cells are too few for a {emb.shape[1]}-dimensional regression; use more cells."
        raise ValueError(msg)
    train = np.ones(n, dtype=bool)
    train[np.random.default_rng(seed + 1).choice(n, size=n_test, replace=False)] = False
    frames = []
    for family, where in spec.items():
        r2 = _heldout_r2(emb, target_matrix(adata, where, rows), train)
        frames.append(
            pd.DataFrame(
                {"family": family, "variable": np.arange(r2.size), "r2": r2, "n_train": n - n_test, "n_test": n_test}
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["family"] = pd.Categorical(out["family"], categories=list(spec))
    return out

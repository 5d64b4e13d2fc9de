"""The closest features of each feature in :func:`sclens.pl.atlas`: by decoder direction and by shared GO terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ._atlas_data import round_

CHUNK = 1024  # features compared at once (a CHUNK x shown-features block of similarities)


def _top(sim: np.ndarray, rows: np.ndarray, ids: np.ndarray, n: int, *, positive: bool) -> dict[str, list]:
    """For each row of ``sim`` (rows = positions in ``ids``) its ``n`` most similar other ids."""
    sim[np.arange(rows.size), rows] = -np.inf
    n = min(n, sim.shape[1])
    if n < 1:
        return {str(int(ids[r])): [] for r in rows}
    part = np.argpartition(-sim, n - 1, axis=1)[:, :n] if n < sim.shape[1] else np.tile(np.arange(n), (rows.size, 1))
    out: dict[str, list] = {}
    for r, s, cand in zip(rows, sim, part, strict=True):
        order = cand[np.lexsort((cand, -s[cand]))]  # by similarity, then by position
        order = order[np.isfinite(s[order]) & ((s[order] > 0) | (not positive))]
        out[str(int(ids[r]))] = [[int(ids[j]), round_(s[j], 3)] for j in order]
    return out


def by_decoder(weights: Any, features: np.ndarray, n: int) -> dict[str, list]:
    """Cosine of the decoder rows (``W_dec``, features x dims): each shown feature's ``n`` closest shown features."""
    w_dec = weights.get("W_dec") if isinstance(weights, dict) else None
    if w_dec is None or n < 1 or features.size < 2:
        return {}
    w = np.asarray(w_dec, dtype=np.float32)[features]  # cosines are shown to 3 digits
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    out: dict[str, list] = {}
    for start in range(0, features.size, CHUNK):
        rows = np.arange(start, min(start + CHUNK, features.size))
        out.update(_top(w[rows] @ w.T, rows, features, n, positive=False))
    return out


def by_terms(results: pd.DataFrame | None, space: Mapping, features: np.ndarray, n: int) -> dict[str, Any]:
    """Closest features in GO-term terms: distance in the ``feature_space`` UMAP when given, else shared terms.

    Shared terms: the Jaccard index of the kept term sets (only features sharing at least one term).
    Returns ``{"method": "feature_space" | "jaccard" | "", "by_feature": {feature: [[other, similarity]]}}``.
    """
    if "umap" in space:
        ids = np.asarray(space["features"]).astype(int)
        shown = np.isin(ids, features)
        ids, xy = ids[shown], np.asarray(space["umap"], dtype=np.float64)[shown]
        out: dict[str, list] = {}
        for start in range(0, ids.size, CHUNK):
            block = np.arange(start, min(start + CHUNK, ids.size))
            dist = np.sqrt(((xy[block, None, :] - xy[None, :, :]) ** 2).sum(-1))
            out.update(_top(-dist, block, ids, n, positive=False))
        return {"method": "feature_space", "by_feature": {k: [[j, -d] for j, d in v] for k, v in out.items()}}
    if not isinstance(results, pd.DataFrame) or results.empty or n < 1:
        return {"method": "", "by_feature": {}}
    res = results[results["feature"].astype(int).isin(features)]
    ids, rows = np.unique(res["feature"].astype(int).to_numpy(), return_inverse=True)
    _, cols = np.unique(res["term"].astype(str).to_numpy(), return_inverse=True)
    mat = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(ids.size, cols.max() + 1 if cols.size else 0))
    mat.data[:] = 1.0  # a term listed twice counts once
    size = np.asarray(mat.sum(1)).ravel()
    out = {}
    for start in range(0, ids.size, CHUNK):
        block = np.arange(start, min(start + CHUNK, ids.size))
        inter = (mat[block] @ mat.T).toarray()
        out.update(_top(inter / np.maximum(size[block, None] + size - inter, 1), block, ids, n, positive=True))
    return {"method": "jaccard", "by_feature": out}

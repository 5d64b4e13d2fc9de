"""The term clustering of sclens before the numba kernels (per feature: sparse product, scipy linkage), the reference.

``by_component=False``: scipy's average linkage over all of a feature's terms (the code before the
per-component kernel); ``benchmarks/atlas.py --compare-term-clusters`` times it on an atlas annotation and
counts the rows whose clusters agree. ``by_component=True``: scipy's linkage within each connected component
of the term pairs at distance ``<= 1 - min_similarity``, which is what
:func:`sclens.tl._annotation._redundancy.cluster_terms` computes; ``tests/tl/test_redundancy.py`` checks that
both give identical ``term_cluster`` and ``representative`` columns (the two definitions agree except where
distances tie exactly).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def clusters_reference(mat: sparse.csr_matrix, min_similarity: float, *, by_component: bool = False) -> np.ndarray:
    """Average-linkage clusters of the rows of a binary terms x genes matrix by Jaccard similarity.

    ``by_component``: each connected component of the pairs at distance ``<= 1 - min_similarity`` (+ 1e-9)
    clustered on its own.
    """
    k = mat.shape[0]
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.sparse.csgraph import connected_components

    inter = (mat @ mat.T).toarray()
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    dist = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(dist, 0.0)
    cut = 1.0 - min_similarity
    if not by_component:
        return _linkage(dist, cut)
    _, comp = connected_components(sparse.csr_matrix(dist <= cut + 1e-9), directed=False)
    labels = np.zeros(k, dtype=np.int64)
    for c in np.unique(comp):
        members = np.flatnonzero(comp == c)
        labels[members] = labels.max() + (_linkage(dist[np.ix_(members, members)], cut) if members.size > 1 else 1)
    return labels


def _linkage(dist: np.ndarray, cut: float) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    return fcluster(linkage(squareform(dist, checks=False), method="average"), t=cut, criterion="distance").astype(
        np.int64
    )


def cluster_terms_reference(
    results: pd.DataFrame,
    matrix: sparse.csr_matrix,
    terms: pd.Index,
    ic: pd.Series,
    *,
    min_similarity: float,
    by_component: bool = False,
) -> pd.DataFrame:
    """The old ``cluster_terms`` (adds ``ic``, ``term_cluster``, ``representative``)."""
    out = results.copy()
    out["ic"] = ic.reindex(out["term"].astype(str)).to_numpy(dtype=float)
    rows = terms.get_indexer(out["term"].astype(str))
    binary = sparse.csr_matrix(matrix, dtype=np.float64)
    binary.data[:] = 1.0
    term_cluster, representative = np.zeros(len(out), dtype=np.int64), np.zeros(len(out), dtype=bool)
    ic_all = np.nan_to_num(out["ic"].to_numpy(), nan=-np.inf)
    for idx in out.groupby("feature", sort=False).indices.values():
        raw = clusters_reference(binary[rows[idx]], min_similarity, by_component=by_component)
        _, first = np.unique(raw, return_index=True)
        rank = {c: r for r, c in enumerate(raw[np.sort(first)])}
        cl = np.array([rank[c] for c in raw], dtype=np.int64)
        term_cluster[idx] = cl
        ic_f = ic_all[idx]
        for c in np.unique(cl):
            members = np.flatnonzero(cl == c)
            representative[idx[members[np.argmax(ic_f[members])]]] = True
    out["term_cluster"], out["representative"] = term_cluster, representative
    return out

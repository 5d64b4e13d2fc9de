"""The random-direction null of :func:`annotation_null`: directions of the embedding at each feature's frequency."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse

from ..._readers import sae_run
from ..._utils import as_dense_float32, get_rep


def embedding_of(adata: AnnData, sae_key: str) -> np.ndarray:
    """Return the embedding an SAE run was trained on (float64), for the random-direction null."""
    use_rep = sae_run(adata, sae_key, need=()).get("params", {}).get("use_rep")
    if use_rep is None:
        msg = (
            f"`adata.uns[{sae_key!r}]['params']` does not name the embedding it was trained on (`use_rep`); "
            "the 'directions' null draws random directions of it. Drop 'directions' from `nulls`."
        )
        raise ValueError(msg)
    return as_dense_float32(get_rep(adata, str(use_rep))).astype(np.float64)


def direction_activations(emb: np.ndarray, frequency: np.ndarray, columns: np.ndarray, n_features: int,
                          rng: np.random.Generator) -> sparse.csr_matrix:  # fmt: skip
    """Random unit directions of the embedding, one per column, thresholded to fire as often as that feature.

    ``frequency``: the firing frequency of each of ``columns`` (features of an ``n_features``-wide SAE).
    Direction ``j`` activates ``max(e . u_j - t_j, 0)`` (cells x directions, centred embedding ``e``),
    with ``t_j`` the projection's ``1 - frequency_j`` quantile, so the same number of cells fire.
    """
    n = emb.shape[0]
    centred = emb - emb.mean(axis=0)
    blocks = []
    for start in range(0, columns.size, 256):
        cols = columns[start : start + 256]
        u = rng.normal(size=(cols.size, emb.shape[1]))
        proj = centred @ (u / np.linalg.norm(u, axis=1, keepdims=True)).T
        n_on = np.rint(frequency[start : start + 256] * n).astype(np.int64)
        cut = -np.sort(-proj, axis=0)[np.clip(n_on, 1, n) - 1, np.arange(cols.size)]
        act = np.where((proj >= cut) & (n_on > 0), proj - cut + 1e-6, 0.0)
        blocks.append(sparse.csr_matrix(act.astype(np.float32)))
    place = sparse.csr_matrix(
        (np.ones(columns.size), (np.arange(columns.size), columns)), shape=(columns.size, n_features)
    )
    return (sparse.hstack(blocks).tocsr() @ place).astype(np.float32).tocsr()

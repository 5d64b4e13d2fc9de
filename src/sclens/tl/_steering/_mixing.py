"""Integration scores of an embedding: batch mixing and cell-type conservation on a kNN graph.

* ``batch_entropy``: mean over cells of the entropy of the batch labels among the cell's ``k``
  nearest neighbours, divided by ``log(n_batches)`` (0: neighbours from one batch, 1: perfectly
  mixed); the kNN batch-entropy score of Haghverdi et al. 2018 (MNN), close in spirit to iLISI.
* ``label_purity``: mean fraction of a cell's ``k`` nearest neighbours with its own label
  (kNN label conservation; 1 is best).
* ``label_asw``: silhouette width of the labels, rescaled to [0, 1] as ``(s + 1) / 2`` (cell-type
  ASW of Luecken et al. 2022; higher is better), on at most ``max_cells`` cells.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SCORES = ("batch_entropy", "label_purity", "label_asw")


def knn(x: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Return the indices of each cell's ``n_neighbors`` nearest neighbours (Euclidean, the cell itself excluded)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors + 1, x.shape[0])
    _, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return idx[:, 1:]


def batch_entropy(neighbours: np.ndarray, batch: np.ndarray) -> float:
    """Mean normalised entropy of the batch labels among neighbours (1: perfectly mixed)."""
    codes, uniques = pd.factorize(batch)
    n_batches = uniques.size
    if n_batches < 2:
        return float("nan")
    n_cells = neighbours.shape[0]
    rows = np.repeat(np.arange(n_cells), neighbours.shape[1])
    counts = np.bincount(rows * n_batches + codes[neighbours].ravel(), minlength=n_cells * n_batches)
    counts = counts.reshape(n_cells, n_batches).astype(np.float64)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return float(h.mean() / np.log(n_batches))


def label_purity(neighbours: np.ndarray, labels: np.ndarray) -> float:
    """Mean fraction of neighbours sharing the cell's label."""
    return float((labels[neighbours] == labels[:, None]).mean())


def label_asw(x: np.ndarray, labels: np.ndarray, *, max_cells: int, seed: int) -> float:
    """Cell-type silhouette rescaled to [0, 1]."""
    from sklearn.metrics import silhouette_score

    if np.unique(labels).size < 2:
        return float("nan")
    n = min(max_cells, x.shape[0])
    return float((silhouette_score(x, labels, sample_size=n, random_state=seed) + 1) / 2)


def integration_scores(
    embeddings: Mapping[str, np.ndarray],
    batch: np.ndarray,
    labels: np.ndarray | None,
    *,
    n_neighbors: int = 15,
    max_cells: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per embedding, columns :data:`SCORES` (label columns NaN without ``labels``)."""
    batch = np.asarray(batch).astype(str)
    labels = None if labels is None else np.asarray(labels).astype(str)
    rows = {}
    for name, x in embeddings.items():
        nn = knn(np.asarray(x, dtype=np.float64), n_neighbors)
        rows[name] = {
            "batch_entropy": batch_entropy(nn, batch),
            "label_purity": float("nan") if labels is None else label_purity(nn, labels),
            "label_asw": float("nan") if labels is None else label_asw(x, labels, max_cells=max_cells, seed=seed),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(SCORES))

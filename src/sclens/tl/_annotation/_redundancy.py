"""Term redundancy and readable feature labels: information content, term clusters, representatives.

Run as the last step of :func:`sclens.tl.annotate_features` (so every annotation has labels) and on
its own by :func:`term_redundancy` (e.g. after :func:`sclens.tl.feature_specificity` added the top
group, or with another ``min_similarity``).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._columns import write_columns
from ..._docs import doc_params
from ..._network import GeneSetsLike, as_network
from ..._readers import annotation, features_table
from ..._utils import check_adata, writable
from ._enrich import network_ic

MIN_SIMILARITY = 0.2
N_TOP_GENES = 3


def information_content(gene_sets: Any) -> pd.Series:
    """Return ``-ln(n_term / n_namespace)`` per term (the information content of each GO term).

    ``n_term`` is the number of genes annotated to the term, ``n_namespace`` the number of
    distinct genes annotated in its namespace (all genes when the gene sets have no namespaces).

    With GO annotations propagated up the graph (the default of :func:`sclens.datasets.go_gene_sets`)
    this is the classic annotation-based information content (Resnik): 0 for a root, large for a
    specific term.
    """
    return network_ic(as_network(gene_sets))


def top_genes_text(table: Any, *, n: int = N_TOP_GENES) -> pd.Series:
    """``"G1, G2, G3"`` per feature from an annotation's ``top_genes`` table (genes ordered by statistic)."""
    if not isinstance(table, pd.DataFrame) or table.empty:
        return pd.Series(dtype=object)
    first = table.groupby("feature", sort=False).head(n)
    return first.groupby(first["feature"].astype(int).astype(str), sort=False)["gene"].agg(", ".join)


def _distance_kernel(ptr, idx, rows, count, start, out):  # pragma: no cover - compiled by numba
    """Condensed Jaccard distances between the gene sets ``rows`` (CSR ``ptr`` / ``idx``) into ``out``.

    The terms of each gene are bucketed in increasing order; then, term by term, each of its genes
    adds one shared gene to the pairs with the later terms of the gene's bucket, all in the term's
    own row of the condensed matrix (scipy's order: ``k a - a (a + 1) / 2 + b - a - 1``). Each
    entry then becomes ``1 - shared / union`` (1 when both sets are empty), bit for bit the value
    computed from the binary matrix's ``B @ B.T``. ``count`` and ``start`` (one entry per gene, 0
    and -1) are workspaces, left as found. Cost: the sum over genes of (terms holding it) squared.
    """
    k = rows.size
    out[:] = 0.0
    total = 0
    for a in range(k):
        total += ptr[rows[a] + 1] - ptr[rows[a]]
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            count[idx[e]] += 1
    bucket, cursor = np.empty(total, dtype=np.int64), 0
    for a in range(k):  # terms of each gene in increasing order; `count` refills as the bucket's cursor
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            g = idx[e]
            if start[g] < 0:
                start[g], cursor, count[g] = cursor, cursor + count[g], 0
            bucket[start[g] + count[g]] = a
            count[g] += 1
    for a in range(k):  # `start[g]` now points at term `a` in the bucket of each of its genes
        base = k * a - a * (a + 1) // 2 - a - 1
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            g = idx[e]
            s = start[g]
            for y in range(s + 1, s + count[g]):
                out[base + bucket[y]] += 1.0
            start[g], count[g] = s + 1, count[g] - 1
            if count[g] == 0:
                start[g] = -1
    p = 0
    for a in range(k):
        size_a = ptr[rows[a] + 1] - ptr[rows[a]]
        for b in range(a + 1, k):
            union = size_a + (ptr[rows[b] + 1] - ptr[rows[b]]) - out[p]
            out[p] = 1.0 - out[p] / union if union > 0 else 1.0
            p += 1


@lru_cache(maxsize=1)
def _distances() -> Any:
    """:func:`_distance_kernel` compiled by numba (once per process, cached on disk)."""
    import numba

    return numba.njit(cache=True, nogil=True)(_distance_kernel)


def _labels(dist: np.ndarray, k: int, cut: float) -> np.ndarray:
    """Flat average-linkage clusters (any numbering) of ``k`` terms from their condensed distances.

    ``fcluster(linkage(dist, "average"), cut, "distance")`` through scipy's own kernels, without the
    checks and copies of the public functions. When no two terms are closer than ``cut`` (with a
    margin for rounding), every merge height (a mean of distances) lies above it: all stay apart.
    """
    if k < 2 or dist.min() > cut + 1e-9:
        return np.arange(k, dtype=np.int64)
    try:
        from scipy.cluster import _hierarchy
        from scipy.cluster.hierarchy import _LINKAGE_METHODS
    except ImportError:  # pragma: no cover - scipy's private kernels moved
        from scipy.cluster.hierarchy import fcluster, linkage

        return fcluster(linkage(dist, method="average"), t=cut, criterion="distance").astype(np.int64)
    out = np.zeros(k, dtype=np.int32)
    _hierarchy.cluster_dist(_hierarchy.nn_chain(dist, k, _LINKAGE_METHODS["average"]), out, float(cut), k)
    return out.astype(np.int64)


def _number_clusters(raw: np.ndarray, block: np.ndarray, ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the clusters of each block (``block`` sorted) from 0 by first member; mark their representatives.

    ``raw``: any cluster labels. A cluster's representative is its first row of the highest ``ic``.
    """
    key = block.astype(np.int64) * (raw.max(initial=0) + 1) + raw
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    ublock = block[first[by_first]]
    number = np.empty(uniq.size, dtype=np.int64)
    number[by_first] = np.arange(uniq.size) - np.searchsorted(ublock, ublock, side="left")
    order = np.lexsort((np.arange(raw.size), -ic, inv))
    lead = order[np.concatenate([[True], inv[order][1:] != inv[order][:-1]])] if raw.size else order
    representative = np.zeros(raw.size, dtype=bool)
    representative[lead] = True
    return number[inv], representative


def cluster_terms(
    results: pd.DataFrame, matrix: sparse.csr_matrix, terms: pd.Index, ic: pd.Series, *, min_similarity: float
) -> pd.DataFrame:
    """Add ``ic``, ``term_cluster`` and ``representative`` to a results table (sorted by feature, p-value).

    Within each feature, kept terms are clustered by the Jaccard similarity of their genes (average
    linkage, clusters merged while the mean similarity is at least ``min_similarity``); nested GO
    terms share most genes, so ancestry is captured through the propagated annotation. Clusters are
    numbered from 0 in the order of their best term; the representative of a cluster is its most
    specific term (highest ``ic``; ties: lowest p-value).
    """
    out = results.copy()
    out["ic"] = ic.reindex(out["term"].astype(str)).to_numpy(dtype=float)
    rows = terms.get_indexer(out["term"].astype(str))
    if (rows < 0).any():
        msg = (
            f"{int((rows < 0).sum())} kept term(s) (e.g. {out['term'][rows < 0].iloc[0]!r}) are not in the gene sets "
            "given; pass as `gene_sets` the gene sets the annotation was run with."
        )
        raise ValueError(msg)
    mat = sparse.csr_matrix(matrix)
    if not mat.has_canonical_format:
        mat = mat.copy()
        mat.sum_duplicates()
    ptr, genes = mat.indptr.astype(np.int64), mat.indices.astype(np.int64)
    count, start = np.zeros(mat.shape[1], dtype=np.int64), np.full(mat.shape[1], -1, dtype=np.int64)
    block = pd.factorize(out["feature"])[0]  # features in order of appearance
    perm = np.argsort(block, kind="stable")  # rows grouped by feature, in table order within one
    block, rows = block[perm], rows[perm].astype(np.int64)
    bounds = np.flatnonzero(np.diff(block, prepend=-1, append=-1))
    kernel, cut, raw = _distances(), 1.0 - min_similarity, np.zeros(len(out), dtype=np.int64)
    for lo, hi in itertools.pairwise(bounds):  # one feature at a time: memory ~ its terms squared
        dist = np.empty((hi - lo) * (hi - lo - 1) // 2)
        kernel(ptr, genes, rows[lo:hi], count, start, dist)
        raw[lo:hi] = _labels(dist, int(hi - lo), cut)
    ic_all = np.nan_to_num(out["ic"].to_numpy(), nan=-np.inf)
    number, rep = _number_clusters(raw, block, ic_all[perm])
    term_cluster, representative = np.zeros(len(out), dtype=np.int64), np.zeros(len(out), dtype=bool)
    term_cluster[perm], representative[perm] = number, rep
    out["term_cluster"], out["representative"] = term_cluster, representative
    return out


def feature_labels(results: pd.DataFrame, features: pd.DataFrame, top_genes: pd.Series) -> pd.DataFrame:
    """``n_term_clusters``, ``representative_term`` and ``label`` ("term | genes | group") per feature."""
    idx = features.index.astype(str)
    n_cl = pd.Series(0, index=idx, dtype=np.int64)
    rep_id = pd.Series("", index=idx, dtype=object)
    rep_name = pd.Series("", index=idx, dtype=object)
    if len(results):
        feat = results["feature"].astype(int).astype(str)
        n_cl.update(results.groupby(feat)["term_cluster"].max() + 1)
        first = results[results["representative"] & (results["term_cluster"] == 0)]
        first = first.set_index(first["feature"].astype(int).astype(str))
        rep_id.update(first["term"].astype(str))
        rep_name.update(first["name"].astype(str).where(first["name"].astype(str) != "", first["term"].astype(str)))
    group = pd.Series("", index=idx, dtype=object)
    if "top_group" in features.columns and "kind" in features.columns:  # a global feature names no group
        local = features["kind"].astype(str).to_numpy() == "local"
        group[local] = features["top_group"].astype(str).to_numpy()[local]
    genes = top_genes.reindex(idx).fillna("").astype(str)
    labels = []
    for f in idx:
        parts = [rep_name[f], genes[f], group[f]] if rep_name[f] else []
        labels.append(" | ".join(p for p in parts if p and p != "nan"))
    return pd.DataFrame(
        {"n_term_clusters": n_cl.astype(np.int64), "representative_term": rep_id.astype(str), "label": labels},
        index=idx,
    )


def add_term_clusters(
    adata: AnnData,
    *,
    sae_key: str,
    annotation_key: str,
    gs: Any,
    min_similarity: float = MIN_SIMILARITY,
) -> None:
    """Cluster the kept terms of ``adata.uns[annotation_key]`` and write labels to the features table.

    ``gs``: the annotation's :class:`~sclens.tl._annotation._enrich.GeneSets` (its ``ic``: each term's
    information content).
    """
    ann = annotation(adata, annotation_key)
    terms = pd.Index(gs.terms["term"].astype(str))
    ann["results"] = cluster_terms(ann["results"], gs.matrix, terms, gs.ic, min_similarity=min_similarity)
    table = features_table(adata, sae_key, required=True)
    genes = top_genes_text(ann.get("top_genes"))
    cols = feature_labels(ann["results"], table, genes)
    cols["top_genes"] = genes.reindex(cols.index).fillna("").astype(str)
    done = ann["params"].get("features")
    if done is not None:  # features this annotation did not cover keep their values
        cols = cols.loc[[str(int(f)) for f in np.atleast_1d(done)]]
    write_columns(adata, sae_key, cols, writer="sl.tl.term_redundancy")
    ann["params"]["min_similarity"] = float(min_similarity)


@doc_params()
def term_redundancy(
    adata: AnnData,
    *,
    gene_sets: GeneSetsLike,
    sae_key: str = "sae",
    annotation_key: str = "sae_go",
    min_similarity: float = MIN_SIMILARITY,
    copy: bool = False,
) -> AnnData | None:
    """Group each feature's GO terms into themes and rebuild its readable label.

    :func:`sclens.tl.annotate_features` runs this as its last step; call it again to change
    ``min_similarity`` or to put the top group into the labels after
    :func:`sclens.tl.feature_specificity`. Each term's information content is
    ``-ln(genes annotated to the term / genes annotated in its namespace)`` (0 for a root, high for
    a specific term). Within a feature, kept terms are clustered by the Jaccard similarity of their
    genes (average linkage; nested GO terms share most genes); the representative of a cluster is
    its most specific term. The label is ``"representative term | top genes | top group"``, e.g.
    ``"B cell receptor signaling pathway | CD79A, MS4A1, CD79B | B cells"``, from the cluster of the
    feature's best term, its top up-regulated genes and, for a local feature, its ``top_group`` (when
    specificity was run; a global feature's label names no group). Labels are stored whole.

    Parameters
    ----------
    {adata}
    gene_sets
        The gene sets the annotation used (their sizes give each term's information content).
    {sae_key}
    {annotation_key}
    min_similarity
        Mean Jaccard similarity of the genes at which two groups of terms are merged.
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[annotation_key]['results']`` columns ``ic``, ``term_cluster`` (0 = the cluster of
      the best term) and ``representative``;
    * ``adata.uns[sae_key]['features']`` columns ``n_term_clusters``, ``representative_term``,
      ``top_genes`` and ``label``.
    """
    from ._enrich import gene_set_matrix

    check_adata(adata)
    if not 0 < min_similarity <= 1:
        msg = f"min_similarity must be in (0, 1], got {min_similarity!r}."
        raise ValueError(msg)
    annotation(adata, annotation_key, sae_key=sae_key)
    features_table(adata, sae_key, required=True)
    gs = gene_set_matrix(gene_sets, adata.var_names)
    adata = writable(adata, copy=copy)
    ann = annotation(adata, annotation_key)
    adata.uns[annotation_key] = {**ann, "params": dict(ann["params"])}  # the copy's own dicts, not the original's
    add_term_clusters(adata, sae_key=sae_key, annotation_key=annotation_key, gs=gs, min_similarity=min_similarity)
    return adata if copy else None

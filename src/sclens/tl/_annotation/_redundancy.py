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
    adds one shared gene to the pairs with the later terms of the gene's bucket, counted in a
    small integer row that is turned at once into the term's row of the condensed matrix (scipy's
    order: ``k a - a (a + 1) / 2 + b - a - 1``): ``1 - shared / union`` (1 when both sets are empty),
    bit for bit the value computed from the binary matrix's ``B @ B.T``. ``count`` and ``start`` (one
    entry per gene, 0 and -1) are workspaces, left as found. Cost: the sum over genes of (terms
    holding it) squared, plus the pairs.
    """
    k = rows.size
    size = np.empty(k, dtype=np.int64)
    for a in range(k):
        size[a] = ptr[rows[a] + 1] - ptr[rows[a]]
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            count[idx[e]] += 1
    bucket, cursor = np.empty(size.sum(), dtype=np.int64), 0
    for a in range(k):  # terms of each gene in increasing order; `count` refills as the bucket's cursor
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            g = idx[e]
            if start[g] < 0:
                start[g], cursor, count[g] = cursor, cursor + count[g], 0
            bucket[start[g] + count[g]] = a
            count[g] += 1
    shared, p = np.zeros(k, dtype=np.int64), 0
    for a in range(k):  # `start[g]` now points at term `a` in the bucket of each of its genes
        for e in range(ptr[rows[a]], ptr[rows[a] + 1]):
            g = idx[e]
            s = start[g]
            for y in range(s + 1, s + count[g]):
                shared[bucket[y]] += 1
            start[g], count[g] = s + 1, count[g] - 1
            if count[g] == 0:
                start[g] = -1
        for b in range(a + 1, k):
            union = size[a] + size[b] - shared[b]
            out[p] = 1.0 - shared[b] / union if union > 0 else 1.0
            shared[b] = 0
            p += 1


@lru_cache(maxsize=1)
def _distances() -> Any:
    """:func:`_distance_kernel` compiled by numba (once per process, cached on disk)."""
    import numba

    return numba.njit(cache=True, nogil=True)(_distance_kernel)


@lru_cache(maxsize=1)
def _tree() -> tuple[Any, Any]:
    """Numba helpers ``(condensed, root)``: a pair's position in a condensed matrix; a union-find root."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def condensed(n, a, b):  # pragma: no cover - compiled
        """Position of the pair ``a != b`` of ``n`` items in a condensed distance matrix (scipy's order)."""
        lo, hi = min(a, b), max(a, b)
        return n * lo - lo * (lo + 1) // 2 + hi - lo - 1

    @numba.njit(cache=True, nogil=True)
    def root(parent, a):  # pragma: no cover - compiled
        """Root of ``a`` in the union-find forest ``parent`` (halving the path on the way)."""
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    return condensed, root


@lru_cache(maxsize=1)
def _chain() -> Any:
    """Return average linkage's merges by scipy's nearest-neighbour chain (``_hierarchy.nn_chain``), in numba."""
    import numba

    condensed, _ = _tree()

    @numba.njit(cache=True, nogil=True)
    def nearest(dist, n, size, x, current, y):  # pragma: no cover - compiled
        """Return the active cluster nearest ``x`` and its distance; ``y`` kept on ties (scipy: strict ``<``)."""
        for i in range(n):
            if size[i] > 0 and i != x and dist[condensed(n, x, i)] < current:
                current, y = dist[condensed(n, x, i)], i
        return current, y

    @numba.njit(cache=True, nogil=True)
    def merges(dist, n):  # pragma: no cover - compiled
        """Return the ``n - 1`` merges ``(x, y, height)`` of average linkage in the chain's order (overwrites dist).

        As scipy: the chain starts at the lowest active cluster, each step prefers the previous
        element on ties, two mutual nearest neighbours merge into the slot of the larger one, and
        its distances become ``(n_x d_ix + n_y d_iy) / (n_x + n_y)``.
        """
        size, chain = np.ones(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        zx, zy, zd = np.empty(n - 1, dtype=np.int64), np.empty(n - 1, dtype=np.int64), np.empty(n - 1)
        length = 0
        for m in range(n - 1):
            if length == 0:
                chain[0], length = np.flatnonzero(size > 0)[0], 1
            while True:  # follow nearest neighbours until two are each other's
                x = chain[length - 1]
                prev = chain[length - 2] if length > 1 else -1
                current, y = nearest(dist, n, size, x, dist[condensed(n, x, prev)] if length > 1 else np.inf, prev)
                if length > 1 and y == prev:
                    break
                chain[length], length = y, length + 1
            length -= 2
            x, y = min(x, y), max(x, y)
            nx, ny = size[x], size[y]
            zx[m], zy[m], zd[m] = x, y, current
            size[x], size[y] = 0, nx + ny
            for i in range(n):
                if size[i] > 0 and i != y:
                    p = condensed(n, i, y)
                    dist[p] = (nx * dist[condensed(n, i, x)] + ny * dist[p]) / (nx + ny)
        return zx, zy, zd

    return merges


@lru_cache(maxsize=1)
def _flat() -> Any:
    """Return scipy's ``cluster_dist`` of a merge list (flat clusters at a distance cut), in numba."""
    import numba

    _, root = _tree()

    @numba.njit(cache=True, nogil=True)
    def flat(zx, zy, zd, n, cut, out):  # pragma: no cover - compiled
        """Write the flat clusters at ``cut`` of merges ``(zx, zy, zd)`` of ``n`` items (a cluster's smallest item).

        As scipy: the merges sorted by height (stable) and relabelled by union-find (``label``);
        the subtrees below a merge form one flat cluster when the highest merge within it is at
        most ``cut`` (``cluster_dist``).
        """
        node, leaf, highest = np.arange(2 * n - 1), np.arange(2 * n - 1), np.zeros(2 * n - 1)
        for i in range(n):
            out[i] = i
        for r, j in enumerate(np.argsort(zd, kind="mergesort")):
            a, b, new = root(node, zx[j]), root(node, zy[j]), n + r
            node[a], node[b], leaf[new] = new, new, leaf[a]
            highest[new] = max(zd[j], highest[a], highest[b])
            if highest[new] <= cut:
                ra, rb = root(out, leaf[a]), root(out, leaf[b])
                out[max(ra, rb)] = min(ra, rb)
        for i in range(n):  # roots are smallest items and parents smaller than children
            out[i] = out[out[i]]

    return flat


@lru_cache(maxsize=1)
def _cluster() -> Any:
    """Return the numba kernel of :func:`_labels`."""
    import numba

    condensed, root = _tree()
    merges, flat = _chain(), _flat()

    @numba.njit(cache=True, nogil=True)
    def components(dist, k, cut, out):  # pragma: no cover - compiled
        """Each term's connected component (its smallest term) over the pairs at distance ``<= cut``."""
        for a in range(k):
            out[a] = a
        p = 0
        for a in range(k):
            for b in range(a + 1, k):
                if dist[p] <= cut:
                    ra, rb = root(out, a), root(out, b)
                    out[max(ra, rb)] = min(ra, rb)
                p += 1
        for a in range(k):  # roots are smallest terms and parents smaller than children
            out[a] = out[out[a]]

    @numba.njit(cache=True, nogil=True)
    def labels(dist, k, cut, out):  # pragma: no cover - compiled
        """Write the flat average-linkage clusters of ``k`` terms (a cluster's smallest term), by component."""
        components(dist, k, cut + 1e-9, out)
        order = np.argsort(out, kind="mergesort")  # each component's terms, in increasing order
        bounds = np.append(np.flatnonzero(np.diff(out[order])) + 1, k)
        lo = 0
        for hi in bounds:
            members, c = order[lo:hi], hi - lo
            lo = hi
            if c < 2:
                continue
            sub, q = np.empty(c * (c - 1) // 2), 0
            for i in range(c):
                for j in range(i + 1, c):
                    sub[q], q = dist[condensed(k, members[i], members[j])], q + 1
            zx, zy, zd = merges(sub, c)
            within = np.empty(c, dtype=np.int64)
            flat(zx, zy, zd, c, cut, within)
            out[members] = members[within]

    return labels


def _labels(dist: np.ndarray, k: int, cut: float) -> np.ndarray:
    """Flat average-linkage clusters (any numbering) of ``k`` terms from their condensed distances.

    ``fcluster(linkage(d, "average"), cut, "distance")``, component by component: two groups of
    terms merge only when their mean distance is at most ``cut``, so at least one pair across them
    is that close; every cluster lies within one connected component of the pairs at distance
    ``<= cut`` (with a margin for rounding), and a component's merges depend only on its own
    distances. Each component of two or more terms runs scipy's algorithm (nearest-neighbour chain,
    stable sort of the merges, ``cluster_dist``) ported to numba; the cost is the sum of the
    components' squared sizes instead of ``k`` squared. Where distances tie exactly, which tied pair
    merges first follows the chain within the component, so a term's cluster can differ from that
    of scipy's chain over all ``k`` terms.
    """
    out = np.arange(k, dtype=np.int64)
    if k > 1 and dist.min() <= cut + 1e-9:
        _cluster()(dist, k, cut, out)
    return out


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


def term_rows(results: pd.DataFrame, terms: pd.Index) -> np.ndarray:
    """Return the row of each kept term of ``results`` in ``terms`` (the gene sets'); raise if one is missing."""
    rows = terms.get_indexer(results["term"].astype(str))
    if (rows < 0).any():
        msg = (
            f"{int((rows < 0).sum())} kept term(s) (e.g. {results['term'][rows < 0].iloc[0]!r}) are not in the gene "
            "sets given; pass as `gene_sets` the gene sets the annotation was run with."
        )
        raise ValueError(msg)
    return rows


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
    rows = term_rows(out, terms)
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
    terms = pd.Index(gs.terms["term"].astype(str))
    term_rows(annotation(adata, annotation_key)["results"], terms)  # before a view is made actual
    adata = writable(adata, copy=copy)
    ann = annotation(adata, annotation_key)
    adata.uns[annotation_key] = {**ann, "params": dict(ann["params"])}  # the copy's own dicts, not the original's
    add_term_clusters(adata, sae_key=sae_key, annotation_key=annotation_key, gs=gs, min_similarity=min_similarity)
    return adata if copy else None

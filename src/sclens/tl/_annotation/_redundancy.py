"""Term redundancy and readable feature labels: information content, term clusters, representatives.

Run as the last step of :func:`sclens.tl.annotate_features` (so every annotation has labels) and on
its own by :func:`term_redundancy` (e.g. after :func:`sclens.tl.feature_specificity` added the top
group, or with another ``min_similarity``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._docs import doc_params
from ..._network import GeneSetsLike, as_network
from ..._readers import annotation, features_table
from ..._utils import check_adata, update_features_table, writable
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


def _clusters(mat: sparse.csr_matrix, min_similarity: float) -> np.ndarray:
    """Average-linkage clusters of the rows of a binary terms x genes matrix by Jaccard similarity."""
    k = mat.shape[0]
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    inter = (mat @ mat.T).toarray()
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    dist = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(
        linkage(squareform(dist, checks=False), method="average"), t=1.0 - min_similarity, criterion="distance"
    )
    return labels.astype(np.int64)


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
            "given; pass the gene sets the annotation was run with."
        )
        raise ValueError(msg)
    binary = sparse.csr_matrix(matrix, dtype=np.float64)
    binary.data[:] = 1.0
    term_cluster, representative = np.zeros(len(out), dtype=np.int64), np.zeros(len(out), dtype=bool)
    ic_all = np.nan_to_num(out["ic"].to_numpy(), nan=-np.inf)
    for idx in out.groupby("feature", sort=False).indices.values():
        raw = _clusters(binary[rows[idx]], min_similarity)
        _, first = np.unique(raw, return_index=True)
        rank = {c: r for r, c in enumerate(raw[np.sort(first)])}
        cl = np.array([rank[c] for c in raw], dtype=np.int64)
        term_cluster[idx] = cl
        ic_f = ic_all[idx]
        for c in np.unique(cl):
            members = np.flatnonzero(cl == c)
            representative[idx[members[np.argmax(ic_f[members])]]] = True  # argmax: first (lowest p) of ties
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
    run, ann = adata.uns[sae_key], adata.uns[annotation_key]
    terms = pd.Index(gs.terms["term"].astype(str))
    ann["results"] = cluster_terms(ann["results"], gs.matrix, terms, gs.ic, min_similarity=min_similarity)
    table = run["features"]
    genes = top_genes_text(ann.get("top_genes"))
    cols = feature_labels(ann["results"], table, genes)
    cols["top_genes"] = genes.reindex(cols.index).fillna("").astype(str)
    done = ann["params"].get("features")
    if done is not None:  # features this annotation did not cover keep their values
        rest = cols.index.difference(pd.Index([str(int(f)) for f in np.atleast_1d(done)]))
        for col in cols.columns.intersection(table.columns):
            cols.loc[rest, col] = table.loc[rest, col].to_numpy()
    update_features_table(run, cols)
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
    adata.uns[annotation_key] = {**adata.uns[annotation_key], "params": dict(adata.uns[annotation_key]["params"])}
    add_term_clusters(adata, sae_key=sae_key, annotation_key=annotation_key, gs=gs, min_similarity=min_similarity)
    return adata if copy else None

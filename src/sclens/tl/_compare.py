"""Match the features of two SAEs by their GO terms (paper sec. 5.3, appendix A.3.8)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse, stats
from scipy.optimize import linear_sum_assignment

from .._docs import doc_params
from .._readers import annotation_results
from ._feature_space import binary_matrix

logger = logging.getLogger("sclens")


@doc_params()
def compare_features(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    annotation_key_a: str = "sae_go",
    annotation_key_b: str = "sae_go",
    namespaces: Sequence[str] | None = ("BP", "MF"),
) -> dict[str, Any]:
    r"""Optimal one-to-one matching of two SAEs' features by the Jaccard similarity of their GO terms.

    Each annotated feature is the set of GO terms it was enriched for. The Jaccard similarity
    :math:`|A \cap B| / |A \cup B|` of every feature pair is computed with sparse products, and
    :func:`scipy.optimize.linear_sum_assignment` finds the one-to-one matching with the largest
    total similarity (``min(n_a, n_b)`` pairs). The two SAEs can come from two models on the same
    cells or from two seeds; they may live in the same AnnData under different keys.

    Parameters
    ----------
    adata_a, adata_b
        AnnData objects holding the two annotations (can be the same object).
    annotation_key_a, annotation_key_b
        Keys of the two annotations (``adata.uns[annotation_key]['results']`` from
        :func:`sclens.tl.annotate_features`).
    namespaces
        GO namespaces kept (``None``: all).

    Returns
    -------
    A dict with

    * ``matches``: DataFrame, one row per matched pair (``feature_a``, ``feature_b``, ``jaccard``,
      ``n_shared``), sorted by decreasing similarity;
    * ``mean_similarity``: mean Jaccard similarity of the matched pairs (the paper reports 0.16
      between its multiDGD and Geneformer SAEs);
    * ``n_features_a``, ``n_features_b``: annotated features of each SAE;
    * ``shared_terms``, ``unique_terms_a``, ``unique_terms_b``: sorted arrays of GO term IDs;
    * ``term_counts``: DataFrame indexed by term (union) with the number of features annotated with
      it in each SAE (``n_a``, ``n_b``);
    * ``spearman``, ``pearson``: correlations of those term counts over the union of terms.
    """
    for name, obj in (("adata_a", adata_a), ("adata_b", adata_b)):
        if not isinstance(obj, AnnData):
            msg = f"{name} must be an AnnData, got {type(obj).__name__}."
            raise TypeError(msg)
    res_a = annotation_results(adata_a, annotation_key_a, namespaces)
    res_b = annotation_results(adata_b, annotation_key_b, namespaces)
    if res_a.empty or res_b.empty:
        which = "adata_a" if res_a.empty else "adata_b"
        msg = f"{which} has no annotated feature for namespaces {namespaces}; nothing to compare."
        raise ValueError(msg)
    mat_a, feats_a, terms_a = binary_matrix(res_a)
    mat_b, feats_b, terms_b = binary_matrix(res_b)
    union = terms_a.union(terms_b)
    mat_a = _reindex_columns(mat_a, terms_a, union)
    mat_b = _reindex_columns(mat_b, terms_b, union)

    matches = _match(mat_a, mat_b, feats_a, feats_b)

    counts = pd.DataFrame(
        {"n_a": np.asarray(mat_a.sum(axis=0)).ravel(), "n_b": np.asarray(mat_b.sum(axis=0)).ravel()},
        index=union,
    ).astype(np.int64)
    if counts["n_a"].nunique() > 1 and counts["n_b"].nunique() > 1:
        spearman = float(stats.spearmanr(counts["n_a"], counts["n_b"]).statistic)
        pearson = float(stats.pearsonr(counts["n_a"], counts["n_b"]).statistic)
    else:
        spearman = pearson = float("nan")
    set_a, set_b = set(terms_a), set(terms_b)
    out = {
        "matches": matches,
        "mean_similarity": float(matches["jaccard"].mean()),
        "n_features_a": int(feats_a.size),
        "n_features_b": int(feats_b.size),
        "shared_terms": np.array(sorted(set_a & set_b), dtype=str),
        "unique_terms_a": np.array(sorted(set_a - set_b), dtype=str),
        "unique_terms_b": np.array(sorted(set_b - set_a), dtype=str),
        "term_counts": counts,
        "spearman": spearman,
        "pearson": pearson,
    }
    logger.info(
        "compare_features: %d x %d features, mean matched Jaccard %.3f, %d shared terms",
        feats_a.size,
        feats_b.size,
        out["mean_similarity"],
        out["shared_terms"].size,
    )
    return out


def _match(
    mat_a: sparse.csr_matrix, mat_b: sparse.csr_matrix, feats_a: np.ndarray, feats_b: np.ndarray
) -> pd.DataFrame:
    """Return the optimal one-to-one matching of the rows of two term matrices by Jaccard similarity."""
    inter = np.asarray((mat_a @ mat_b.T).todense(), dtype=np.float64)
    size_a = np.asarray(mat_a.sum(axis=1)).ravel()
    size_b = np.asarray(mat_b.sum(axis=1)).ravel()
    jac = inter / (size_a[:, None] + size_b[None, :] - inter)
    rows, cols = linear_sum_assignment(jac, maximize=True)
    matches = pd.DataFrame(
        {
            "feature_a": feats_a[rows],
            "feature_b": feats_b[cols],
            "jaccard": jac[rows, cols],
            "n_shared": inter[rows, cols].astype(np.int64),
        }
    )
    matches = matches.sort_values(["jaccard", "feature_a"], ascending=[False, True], kind="stable")
    matches.index = [str(i) for i in range(len(matches))]
    return matches


def _reindex_columns(mat: sparse.csr_matrix, terms: pd.Index, union: pd.Index) -> sparse.csr_matrix:
    coo = mat.tocoo()
    cols = union.get_indexer(terms)[coo.col]
    return sparse.csr_matrix((coo.data, (coo.row, cols)), shape=(mat.shape[0], union.size))

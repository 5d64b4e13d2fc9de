"""The SAE feature x GO-term space: binary matrix, UMAP, first-level categories, summary (paper sec. 5.3)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._docs import doc_params
from .._readers import annotation_results, store_result
from .._utils import check_key_added, writable
from .._warnings import SclensWarning
from ..datasets import GeneOntology

logger = logging.getLogger("sclens")

UNASSIGNED = "unassigned"


def binary_matrix(res: pd.DataFrame) -> tuple[sparse.csr_matrix, np.ndarray, pd.Index]:
    """Features x terms 0/1 CSR matrix, the feature ids (sorted) and the terms (sorted)."""
    feats = np.sort(res["feature"].astype(np.int64).unique())
    terms = pd.Index(np.sort(res["term"].astype(str).unique()))
    rows = np.searchsorted(feats, res["feature"].astype(np.int64).to_numpy())
    cols = terms.get_indexer(res["term"].astype(str))
    mat = sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(feats.size, terms.size))
    mat.data[:] = 1.0  # duplicated (feature, term) rows count once
    return mat, feats, terms


def _category_table(categories: Any, terms: pd.Index) -> pd.DataFrame:
    """Long table ``term`` -> ``category`` (names) from a mapping, DataFrame or GeneOntology."""
    if categories is None:
        try:
            from ..datasets import go_ontology
        except ImportError:
            return pd.DataFrame({"term": [], "category": []})
        categories = go_ontology()
    if hasattr(categories, "first_level_table"):
        known = [t for t in terms if t in categories]
        if not known:
            return pd.DataFrame({"term": [], "category": []})
        tab = categories.first_level_table(known)
        return pd.DataFrame({"term": tab["term"].astype(str), "category": tab["first_level_name"].astype(str)})
    if isinstance(categories, pd.DataFrame):
        if not {"term", "category"} <= set(categories.columns):
            msg = "A categories DataFrame needs columns 'term' and 'category'."
            raise KeyError(msg)
        return categories[["term", "category"]].astype(str)
    if isinstance(categories, Mapping):
        rows = [(str(t), str(c)) for t, cs in categories.items() for c in ([cs] if isinstance(cs, str) else list(cs))]
        return pd.DataFrame(rows, columns=["term", "category"])
    msg = (
        "categories must be None, a GeneOntology (`sl.datasets.go_ontology()`), a mapping term -> "
        f"category or a DataFrame with 'term' and 'category' columns, got {type(categories).__name__}."
    )
    raise TypeError(msg)


def _feature_categories(mat: sparse.csr_matrix, terms: pd.Index, table: pd.DataFrame) -> np.ndarray:
    """Most common first-level category over each feature's terms (ties: alphabetical)."""
    table = table[table["term"].isin(terms)]
    if table.empty:
        return np.full(mat.shape[0], UNASSIGNED, dtype=object)
    cats = np.sort(table["category"].unique())
    tc = sparse.csr_matrix(
        (
            np.ones(len(table)),
            (terms.get_indexer(table["term"]), np.searchsorted(cats, table["category"].to_numpy())),
        ),
        shape=(terms.size, cats.size),
    )
    counts = np.asarray((mat @ tc).todense())
    best = cats[np.argmax(counts, axis=1)].astype(object)
    best[counts.max(axis=1) == 0] = UNASSIGNED
    return best


@doc_params()
def feature_space(
    adata: AnnData,
    *,
    annotation_key: str = "sae_go",
    namespaces: Sequence[str] | None = ("BP", "MF"),
    n_neighbors: int = 10,
    min_dist: float = 1.0,
    spread: float = 10.0,
    metric: str = "euclidean",
    categories: GeneOntology | Mapping[str, str | Sequence[str]] | pd.DataFrame | None = None,
    n_top_terms: int = 20,
    random_state: int = 0,
    key_added: str = "feature_space",
    copy: bool = False,
) -> AnnData | None:
    """Binary feature x GO-term matrix of the annotation, its UMAP and summary statistics.

    Every annotated feature becomes a point described by the set of terms it was enriched for;
    features are embedded with UMAP (paper: 10 neighbours, min_dist 1.0, spread 10, seed 0) and
    coloured by the most common first-level GO category of their terms.

    Parameters
    ----------
    {adata}
    {annotation_key}
    namespaces
        GO namespaces kept (``None``: all).
    n_neighbors, min_dist, spread, metric
        UMAP settings (:class:`umap.UMAP`). ``n_neighbors`` is lowered to ``n_features - 1`` when there
        are fewer annotated features, with a warning; at least 4 features are needed.
    categories
        First-level category of each term: a GeneOntology (``sl.datasets.go_ontology()``), a mapping
        ``term -> category name`` (or a list of names), or a DataFrame with ``term``/``category``
        columns. ``None`` uses the embedded GO snapshot when available; terms not found are
        ``"unassigned"``.
    n_top_terms
        Number of most frequent terms reported.
    {random_state}
    key_added
        Key in ``adata.uns[annotation_key]`` under which the space is stored.
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets ``adata.uns[annotation_key][key_added]`` with

    * ``features`` (feature ids, int), ``umap`` (features x 2), ``category`` (str), ``n_terms`` (int),
      ``terms`` / ``term_name`` / ``term_namespace`` (columns of the matrix), ``matrix`` (CSR 0/1,
      features x terms);
    * ``summary``: ``n_features_with_terms``, ``n_unique_terms``, ``n_unique_terms_<NS>`` per
      namespace, ``terms_per_feature_mean``, ``_sem``, ``_min``, ``_max``;
    * ``top_terms``: DataFrame of the ``n_top_terms`` most frequent terms (``term``, ``name``,
      ``namespace``, ``n_features``);
    * ``params``: the arguments, ``annotation_key`` and ``annotation_run_id``, and the annotation's
      ``sae_key`` and ``sae_run_id``.

    :func:`sclens.get.feature_space` returns all of it as a features-level AnnData.
    """
    key = annotation_key
    check_key_added(key_added, reserved={k: f"the annotation's `{k}`" for k in ("results", "skipped", "params", "de")})
    res = annotation_results(adata, key, namespaces)
    if res.empty:
        msg = f"No annotated feature in `adata.uns[{key!r}]['results']` for namespaces {namespaces}."
        raise ValueError(msg)
    mat, feats, terms = binary_matrix(res)
    n = feats.size
    n_neighbors = _check_n_neighbors(n, n_neighbors)
    coords = _umap(mat, n_neighbors=n_neighbors, min_dist=min_dist, spread=spread, metric=metric, seed=random_state)
    category = _feature_categories(mat, terms, _category_table(categories, terms))
    n_terms = np.asarray(mat.sum(axis=1)).ravel().astype(np.int64)
    term_name, term_ns, top_terms = _term_columns(res, mat, terms, n_top_terms)
    summary = _summary(n_terms, term_ns)
    logger.info(
        "feature_space: %d features, %d terms, %.1f +- %.1f terms per feature",
        n,
        terms.size,
        summary["terms_per_feature_mean"],
        summary["terms_per_feature_sem"],
    )
    adata = writable(adata, copy=copy)
    tables = {
        "features": feats.astype(np.int64),
        "umap": coords,
        "category": category.astype(str),
        "n_terms": n_terms,
        "terms": terms.to_numpy().astype(str),
        "term_name": term_name.astype(str),
        "term_namespace": term_ns.astype(str),
        "matrix": mat,
        "summary": summary,
        "top_terms": top_terms,
    }
    params = {
        "namespaces": np.asarray(list(namespaces) if namespaces is not None else [], dtype=str),
        "n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "spread": float(spread), "metric": metric,
        "random_state": int(random_state),
    }  # fmt: skip
    store_result(adata, "feature_space", key=key_added, parent=key, tables=tables, params=params)
    return adata if copy else None


def _check_n_neighbors(n: int, n_neighbors: int) -> int:
    """Return ``n_neighbors`` lowered to ``n - 1`` (with a warning) for few features; refuse fewer than 4."""
    if n < 4:
        msg = f"Only {n} annotated feature(s); a feature-space UMAP needs at least 4."
        raise ValueError(msg)
    if n_neighbors >= n:
        warnings.warn(
            f"n_neighbors={n_neighbors} >= number of annotated features ({n}); using {n - 1}.",
            SclensWarning,
            stacklevel=3,
        )
        n_neighbors = n - 1
    return n_neighbors


def _umap(
    mat: sparse.csr_matrix, *, n_neighbors: int, min_dist: float, spread: float, metric: str, seed: int
) -> np.ndarray:
    """Return the 2-D UMAP (float32) of the features x terms matrix."""
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        warnings.filterwarnings("ignore", message="divide by zero", category=RuntimeWarning)
        reducer = umap.UMAP(
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            spread=spread,
            metric=metric,
            random_state=seed,
            n_jobs=1,
        )
        return reducer.fit_transform(mat).astype(np.float32)


def _term_columns(
    res: pd.DataFrame, mat: sparse.csr_matrix, terms: pd.Index, n_top_terms: int
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Return the name and namespace of every term and the table of the most frequent terms."""
    first = res.drop_duplicates("term")
    first = first.set_index(first["term"].astype(str))

    def _term_column(col: str, default: np.ndarray) -> np.ndarray:
        return first[col].reindex(terms).fillna("").astype(str).to_numpy() if col in first else default

    term_name = _term_column("name", terms.to_numpy())
    term_ns = _term_column("namespace", np.full(terms.size, ""))
    per_term = np.asarray(mat.sum(axis=0)).ravel().astype(np.int64)
    top = np.argsort(-per_term, kind="stable")[:n_top_terms]
    top_terms = pd.DataFrame(
        {"term": terms[top], "name": term_name[top], "namespace": term_ns[top], "n_features": per_term[top]},
        index=[str(i) for i in range(top.size)],
    )
    return term_name, term_ns, top_terms


def _summary(n_terms: np.ndarray, term_ns: np.ndarray) -> dict[str, Any]:
    """Return the counts of features and terms and the terms-per-feature statistics."""
    n = n_terms.size
    return {
        "n_features_with_terms": int(n),
        "n_unique_terms": int(term_ns.size),
        **{f"n_unique_terms_{ns}": int((term_ns == ns).sum()) for ns in sorted(set(term_ns)) if ns},
        "terms_per_feature_mean": float(n_terms.mean()),
        "terms_per_feature_sem": float(n_terms.std(ddof=1) / np.sqrt(n)),
        "terms_per_feature_min": int(n_terms.min()),
        "terms_per_feature_max": int(n_terms.max()),
    }

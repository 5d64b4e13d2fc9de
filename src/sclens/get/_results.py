"""Read annotation results from an AnnData without pandas gymnastics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._features import resolve_features
from .._readers import annotation, annotation_results, has_themes, theme_rows


@doc_params()
def feature_terms(
    adata: AnnData, *, features: int | Sequence[int], annotation_key: str = "sae_go", themes: bool = False
) -> pd.DataFrame:
    """Return the terms kept for SAE features, best first, or one term per theme.

    Nested GO terms share most of their genes, so a feature's best terms are often one theme said
    ten ways ("translation", "peptide biosynthetic process", "cytoplasmic translation", ...).
    ``themes=True`` reads the term clusters of :func:`sclens.tl.term_redundancy` (run by
    :func:`sclens.tl.annotate_features`): one row per theme, its representative (the theme's most
    specific term), themes in the order of their best term. On real cells the first ten themes carry
    the cell type's GO vocabulary far more often than the first ten terms (``benchmarks/biology.py``).

    Parameters
    ----------
    {adata}
    {features}
    {annotation_key}
    themes
        ``False``: every kept term, by p-value. ``True``: the representative term of each term theme,
        with ``n_theme_terms`` (kept terms in its theme).

    Returns
    -------
    DataFrame indexed by term with ``name``, ``namespace``, ``n_overlap``, ``set_size``, ``n_de``,
    the effect (``odds_ratio`` or ``score``), ``pvalue`` and ``padj``; empty when the feature was
    annotated without terms. For a sequence of features, the tables one after another with a first
    column ``feature``. Raises a ``KeyError`` for a feature that was skipped or not annotated, a
    ``ValueError`` for ``themes=True`` on results without term clusters.
    """
    feats = resolve_features(features, None).tolist()
    res = annotation_results(adata, annotation_key, None)
    if themes and not has_themes(res):
        msg = (
            f"`adata.uns[{annotation_key!r}]['results']` has no term themes (columns `term_cluster`, "
            f"`representative`); run `sl.tl.term_redundancy(adata, annotation_key={annotation_key!r})` first."
        )
        raise ValueError(msg)
    if isinstance(features, (int, np.integer)):
        return _one_feature(adata, res, int(features), annotation_key, themes=themes)
    tables = [_one_feature(adata, res, int(f), annotation_key, themes=themes) for f in feats]
    for f, table in zip(feats, tables, strict=True):
        table.insert(0, "feature", int(f))
    return pd.concat(tables)


def _one_feature(adata: AnnData, res: pd.DataFrame, feature: int, key: str, *, themes: bool) -> pd.DataFrame:
    ann = annotation(adata, key)
    params = ann["params"]
    annotated = set(map(int, params.get("features", []))) if "features" in params else None
    skipped = ann.get("skipped")
    if isinstance(skipped, pd.DataFrame) and feature in set(skipped["feature"].astype(int)):
        reason = skipped.loc[skipped["feature"].astype(int) == feature, "reason"].iloc[0]
        msg = f"Feature {feature} was skipped by annotate_features: {reason}."
        raise KeyError(msg)
    if annotated is not None and feature not in annotated:
        msg = (
            f"Feature {feature} was not annotated under annotation_key {key!r}; "
            "pass it in `features=` of annotate_features."
        )
        raise KeyError(msg)
    sub = res[res["feature"].astype(int) == feature]
    if themes:
        sub = theme_rows(sub)
    return sub.drop(columns="feature").set_index("term")

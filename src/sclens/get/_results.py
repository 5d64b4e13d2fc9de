"""Read annotation results from an AnnData without pandas gymnastics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._readers import annotation, annotation_results
from .._utils import as_feature_list


@doc_params()
def feature_terms(adata: AnnData, *, features: int | Sequence[int], annotation_key: str = "sae_go") -> pd.DataFrame:
    """Return the terms kept for SAE features, best first.

    Parameters
    ----------
    {adata}
    {features}
    {annotation_key}

    Returns
    -------
    DataFrame indexed by term with ``name``, ``namespace``, ``n_overlap``, ``set_size``, ``n_de``,
    the effect (``odds_ratio`` or ``score``), ``pvalue`` and ``padj``; empty when the feature was
    annotated without terms. For a sequence of features, the tables one after another with a first
    column ``feature``. Raises a ``KeyError`` for a feature that was skipped or not annotated.
    """
    feats = as_feature_list(features)
    res = annotation_results(adata, annotation_key, None)
    if isinstance(features, (int, np.integer)):
        return _one_feature(adata, res, int(features), annotation_key)
    tables = [_one_feature(adata, res, int(f), annotation_key) for f in feats]
    for f, table in zip(feats, tables, strict=True):
        table.insert(0, "feature", int(f))
    return pd.concat(tables)


def _one_feature(adata: AnnData, res: pd.DataFrame, feature: int, key: str) -> pd.DataFrame:
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
    sub = res[res["feature"].astype(int) == feature].drop(columns="feature")
    return sub.set_index("term")

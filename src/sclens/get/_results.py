"""Read annotation results from an AnnData without pandas gymnastics."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from ..tl._feature_space import annotation_results


@doc_params()
def feature_terms(adata: AnnData, *, feature: int, key: str = "sae_go") -> pd.DataFrame:
    """The terms kept for one SAE feature, best first.

    Parameters
    ----------
    {adata}
    feature
        Feature number.
    key
        Key of :func:`sclens.tl.annotate_features` results (its ``key_added``).

    Returns
    -------
    DataFrame indexed by term with ``name``, ``namespace``, ``n_overlap``, ``set_size``, ``n_de``,
    the effect (``odds_ratio`` or ``score``), ``pvalue`` and ``padj``; empty when the feature was
    annotated without terms. Raises a ``KeyError`` for a feature that was skipped or not annotated.
    """
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)):
        msg = f"feature must be one feature number (an integer), got {feature!r}."
        raise TypeError(msg)
    res = annotation_results(adata, key, None)
    feature = int(feature)
    params = adata.uns[key].get("params", {})
    annotated = set(map(int, params.get("features", []))) if "features" in params else None
    skipped = adata.uns[key].get("skipped")
    if isinstance(skipped, pd.DataFrame) and feature in set(skipped["feature"].astype(int)):
        reason = skipped.loc[skipped["feature"].astype(int) == feature, "reason"].iloc[0]
        msg = f"Feature {feature} was skipped by annotate_features: {reason}."
        raise KeyError(msg)
    if annotated is not None and feature not in annotated:
        msg = f"Feature {feature} was not annotated under key {key!r}; pass it in `features=` of annotate_features."
        raise KeyError(msg)
    sub = res[res["feature"].astype(int) == feature].drop(columns="feature")
    return sub.set_index("term")

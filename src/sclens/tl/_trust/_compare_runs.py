"""``sl.tl.compare_runs``: SAE and baseline runs of one AnnData side by side, one row each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._docs import doc_params
from ..._readers import result, sae_run
from ..._utils import check_adata
from ._trust_utils import as_list, features_table


def _last(x) -> float:
    arr = np.asarray(x, dtype=float).ravel()
    return float(arr[-1]) if arr.size else np.nan


def _median(x: pd.Series) -> float:
    return float(np.median(x)) if len(x) else np.nan


def _scorecard(adata: AnnData, key: str, evaluation_key: str) -> dict[str, float]:
    """Return the metrics of the run's :func:`evaluate` scorecard, when it has one (a stale one is refused)."""
    card = result(adata, "evaluation", key=evaluation_key, parent=key, missing_ok=True)
    if card is None:
        return {}
    table = card["scorecard"]
    return dict(zip(table["metric"].astype(str), table["value"].astype(float), strict=True))


def _row(adata: AnnData, key: str, alignment_key: str, null_key: str, min_auroc: float) -> dict[str, float | str]:
    run = sae_run(adata, key, need=(), activations=True)
    params = run.get("params", {})
    n_features = adata.obsm[f"X_{key}"].shape[1]
    feats = features_table(run, n_features)
    kind = feats["kind"].astype(str) if "kind" in feats else pd.Series("live", index=feats.index)
    live = kind != "dead"
    method = params.get("method") if params.get("source") == "baseline_features" else params.get("architecture", "sae")
    specific = "top_group" in feats  # feature_specificity ran
    row: dict[str, float | str] = {
        "method": str(method), "n_features": int(n_features), "n_live": int(live.sum()),
        "fvu": _last(run.get("metrics", {}).get("fvu", np.nan)),
        "local_fraction": float((kind == "local").sum() / max(live.sum(), 1)) if specific else np.nan,
    }  # fmt: skip
    if "n_terms" in feats:
        n_terms = feats.loc[live, "n_terms"].astype(float)
        row["annotated_fraction"] = float((n_terms > 0).mean()) if len(n_terms) else np.nan
        row["median_terms"] = _median(n_terms[n_terms > 0])
        if "n_term_clusters" in feats:
            row["median_term_clusters"] = _median(
                feats.loc[live & (feats["n_terms"] > 0), "n_term_clusters"].astype(float)
            )
    null = result(adata, "annotation_null", key=null_key, parent=key, missing_ok=True)
    if null is not None:
        null = null["params"]
        rates = [v for k, v in null.items() if k.startswith("null_") and k.endswith("_annotated")]
        row["annotated_fraction_in_features_tested"] = null["n_annotated"] / max(null["n_features"], 1)
        row["null_annotated_fraction"] = max(float(r) for r in rates) / max(null["n_features"], 1)
    alignment = result(adata, "alignment", key=alignment_key, parent=key, missing_ok=True)
    if alignment is not None:
        table = alignment["table"]
        for col, sub in table.groupby("groupby", sort=False):
            best = sub.groupby("feature")["auroc"].max()
            row[f"{col}_median_auroc"] = _median(best)
            covered = sub.groupby("category")["auroc"].max() >= min_auroc
            row[f"{col}_covered"] = float(covered.mean())
        if "batch_driven" in feats:
            row["batch_driven_fraction"] = float(feats.loc[live, "batch_driven"].astype(bool).mean())
    return row


@doc_params()
def compare_runs(
    adata: AnnData,
    *,
    sae_keys: Sequence[str],
    alignment_key: str = "alignment",
    null_key: str = "annotation_null",
    evaluation_key: str = "evaluation",
    min_auroc: float = 0.9,
) -> pd.DataFrame:
    """One table comparing SAE runs and baselines (:func:`baseline_features`) of the same data.

    Reads what each run already holds (run :func:`feature_specificity`, :func:`annotate_features`,
    :func:`annotation_null` and :func:`feature_alignment` on each first; missing parts are left out).

    Parameters
    ----------
    {adata}
    sae_keys
        Runs to compare, e.g. ``["sae", "ica", "pca"]``.
    alignment_key
        Name of the :func:`feature_alignment` result in each run.
    null_key
        Name of the :func:`annotation_null` result in each run.
    evaluation_key
        Name of the :func:`evaluate` scorecard in each run: its metrics become columns.
    min_auroc
        AUROC at which a category counts as captured by some feature (``*_covered``).

    Returns
    -------
    DataFrame indexed by run key, with columns ``method``, ``n_features``, ``n_live``, ``fvu``
    (unexplained variance of the embedding), ``local_fraction`` (local among live features), and
    when available ``annotated_fraction`` (live features with at least one kept term),
    ``median_terms`` and ``median_term_clusters`` (over annotated features),
    ``annotated_fraction_in_features_tested`` and ``null_annotated_fraction`` (observed and the
    larger null rate of :func:`annotation_null`), ``{{column}}_median_auroc`` (median best AUROC per
    live feature), ``{{column}}_covered`` (fraction of categories with a feature of AUROC >=
    ``min_auroc``) and ``batch_driven_fraction``; then the scorecard metrics of :func:`evaluate`
    not already there (``share_reproduced``, ``median_stability``, ``probing_k{{k}}``, ``mean_absorption``).
    """
    check_adata(adata)
    keys = as_list(sae_keys, "sae_keys")
    if not keys:
        msg = "sae_keys is empty; pass the runs to compare, e.g. sae_keys=['sae', 'ica', 'pca']."
        raise ValueError(msg)
    rows = {}
    for k in keys:
        row = _row(adata, k, alignment_key, null_key, float(min_auroc))
        rows[k] = {**row, **{m: v for m, v in _scorecard(adata, k, evaluation_key).items() if m not in row}}
    return pd.DataFrame.from_dict(rows, orient="index")

"""``sl.tl.evaluate``: one scorecard of an SAE run (stability, probing, absorption, alignment, nulls)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._docs import doc_params
from ..._readers import features_table, result, sae_run, store_result
from ..._utils import check_key_added, get_rep, resolve_seed, writable
from ._absorption import _coarse_of, feature_absorption
from ._alignment import feature_alignment
from ._probing import BASELINES, sparse_probing
from ._spurious import spurious_removal
from ._stability import feature_stability
from ._trust_utils import as_list, obs_codes

logger = logging.getLogger("sclens")

COLUMNS = ["metric", "value", "baseline", "baseline_method", "meaning"]


def _light(adata: AnnData, run: Mapping, sae_key: str, columns: list[str]) -> AnnData:
    """Return an AnnData with the obs columns, the embedding and the SAE run the tools need (no expression, no copy)."""
    light = AnnData(obs=adata.obs[columns].copy() if columns else pd.DataFrame(index=adata.obs_names.copy()))
    light.obsm[f"X_{sae_key}"] = adata.obsm[f"X_{sae_key}"]
    params = dict(run.get("params", {}))
    if "use_rep" in params:
        light.obsm["X_rep"] = get_rep(adata, str(params["use_rep"]))
        params["use_rep"] = "X_rep"
    light.uns[sae_key] = {**run, "params": params}
    return light


def _row(metric: str, value: float, meaning: str, baseline: float = np.nan, method: str = "") -> dict[str, Any]:
    return {"metric": metric, "value": float(value), "baseline": float(baseline), "baseline_method": method,
            "meaning": meaning}  # fmt: skip


def _probing_rows(summary: pd.DataFrame, groupby: str, split_by: str | None) -> list[dict[str, Any]]:
    """One row per ``k``: the SAE's balanced accuracy next to the best baseline's."""
    held = f"held-out `{split_by}` groups" if split_by else "held-out cells"
    rows = []
    for k, sub in summary.groupby("k", sort=True):
        mine = sub.loc[sub["method"] == "sae", "balanced_accuracy"]
        other = sub[sub["method"] != "sae"].sort_values("balanced_accuracy", ascending=False)
        best = (float(other["balanced_accuracy"].iloc[0]), str(other["method"].iloc[0])) if len(other) else (np.nan, "")
        meaning = f"balanced accuracy of {int(k)}-feature probes for `{groupby}` on {held}"
        rows.append(_row(f"probing_k{int(k)}", mine.iloc[0] if len(mine) else np.nan, meaning, *best))
    return rows


def _alignment_rows(long: pd.DataFrame, feats: pd.DataFrame) -> list[dict[str, Any]]:
    """Median best AUROC per scored column, and the batch-driven share of live features."""
    rows = [
        _row(f"{col}_median_auroc", sub.groupby("feature")["auroc"].max().median(),
             f"median over live features of the best AUROC for a `{col}` category")
        for col, sub in long.groupby("groupby", sort=False)
    ]  # fmt: skip
    if "batch_driven" in feats:
        live = feats["kind"].astype(str) != "dead" if "kind" in feats else np.ones(len(feats), dtype=bool)
        meaning = "live features that separate a technical label better than any biological one"
        rows.append(_row("batch_driven_fraction", feats.loc[live, "batch_driven"].astype(bool).mean(), meaning))
    return rows


def _null_rows(null: Mapping | None) -> list[dict[str, Any]]:
    """Return the annotation rate of :func:`annotation_null` next to its largest null rate."""
    if null is None:
        return []
    null = null["params"]
    n = max(int(null["n_features"]), 1)
    rates = {k[5:-10]: float(v) / n for k, v in null.items() if k.startswith("null_") and k.endswith("_annotated")}
    worst = max(rates, key=rates.get)
    meaning = "features with at least one enriched term, next to the same pipeline under a null"
    return [_row("annotated_fraction", null["n_annotated"] / n, meaning, rates[worst], f"null_{worst}")]


def _rows(run: Mapping, found: Mapping[str, Mapping], groupby: str, split_by: str | None, null: Mapping | None):
    """Scorecard rows read from the run's metrics and the results the tools wrote (``found``: kind -> result)."""
    metrics = run.get("metrics", {})
    meanings = {"fvu": "embedding variance the features leave unexplained (lower is better)",
                "l0": "features active per cell", "dead_fraction": "features never active"}  # fmt: skip
    rows = [_row(m, np.asarray(metrics[m], dtype=float).ravel()[-1], t) for m, t in meanings.items() if m in metrics]
    if "stability" in found:
        p = found["stability"]["params"]
        refits = f"by {len(p['seeds'])} refits with other seeds"
        rows.append(_row("share_reproduced", p["share_reproduced"],
                         f"live features found again (|cos| >= {p['threshold']:g}) {refits}"))  # fmt: skip
        rows.append(_row("median_stability", p["median_stability"], f"median |cos| of a feature's match {refits}"))
    if "probing" in found:
        rows += _probing_rows(found["probing"]["summary"], groupby, split_by)
    if "absorption" in found:
        meaning = (
            "cells of a coarse type whose coarse feature is silent while a subtype feature fires (lower is better)"
        )
        rows.append(_row("mean_absorption", found["absorption"]["params"]["mean_absorption"], meaning))
    if "alignment" in found:
        rows += _alignment_rows(found["alignment"]["table"], run["features"])
    if "spurious" in found:
        p = found["spurious"]["params"]
        what = f"held-out balanced accuracy lost when the {len(p['features'])} technical features are ablated"
        rows.append(_row("technical_drop", p["technical_drop"], f"`{p['technical']}` {what}",
                         p["random_technical_drop"], "random features"))  # fmt: skip
        rows.append(_row("groupby_drop", p["groupby_drop"], f"`{p['groupby']}` {what} (lower is better)",
                         p["random_groupby_drop"], "random features"))  # fmt: skip
    return rows + _null_rows(null)


@doc_params()
def evaluate(
    adata: AnnData,
    *,
    groupby: str,
    sae_key: str = "sae",
    split_by: str | None = None,
    technical: str | Sequence[str] | None = None,
    coarse: str | Mapping[str, str] | None = None,
    n_seeds: int = 2,
    k: Sequence[int] = (1, 2, 4, 8, 16),
    baselines: Sequence[str] = BASELINES,
    fit_kwargs: dict[str, Any] | None = None,
    random_state: int | None = 0,
    null_key: str = "annotation_null",
    key_added: str = "evaluation",
    copy: bool = False,
) -> AnnData | None:
    """One scorecard of an SAE run: whether its features are reproducible, predictive, unabsorbed and specific.

    Runs, with the same ``random_state``, and stores each tool's full result under its own name in
    the run:

    * :func:`feature_stability` (``n_seeds`` refits; skipped with ``n_seeds=0`` and for baselines);
    * :func:`sparse_probing` of ``groupby`` (held-out ``split_by`` groups) against ``baselines``;
    * :func:`feature_absorption` of ``groupby`` along ``coarse`` (when given);
    * :func:`feature_alignment` of ``groupby`` (and ``technical``);
    * with ``technical``: :func:`spurious_removal` of the features flagged ``batch_driven`` (the top 5
      by technical AUROC when none or more than half of the live features are flagged), first
      technical column;

    then writes one scorecard, a row per metric with the baseline it should beat and what it means,
    adding the annotation rate next to its null when :func:`annotation_null` has run (``null_key``). The tools work
    on a light copy (obs columns, embedding, activations): ``adata`` is written only when all succeed.

    Parameters
    ----------
    {adata}
    groupby
        Column of ``adata.obs`` with the cell labels (e.g. cell types).
    {sae_key}
    split_by
        Column of ``adata.obs`` (donor, batch) whose groups the probes are scored on unseen.
    technical
        Column(s) of ``adata.obs`` with technical labels for :func:`feature_alignment` (``batch_driven``).
    coarse
        Column of ``adata.obs`` or mapping ``groupby`` category -> coarse type: measure absorption.
    n_seeds
        Refits for :func:`feature_stability` (each costs one :func:`fit_sae`); 0 skips stability.
    k
        Features per probe.
    baselines
        Matrices probed like the SAE: ``"embedding"``, ``"pca"``, ``"ica"``.
    fit_kwargs
        Passed to :func:`feature_stability` (settings that replace the stored run's).
    {random_state}
    null_key
        Name of the :func:`annotation_null` result in the run, read when present.
    key_added
        Name of the scorecard in ``adata.uns[sae_key]``.
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['scorecard']``: DataFrame with ``metric``, ``value``,
      ``baseline`` (what the metric should beat, NaN when none), ``baseline_method`` and ``meaning``;
    * ``adata.uns[sae_key][key_added]['params']``: the arguments, ``results`` (tool name -> key of its
      result in the run), ``sae_key`` and ``sae_run_id``;
    * the results of the tools run: ``adata.uns[sae_key]['stability']``, ``['probing']``,
      ``['absorption']``, ``['alignment']`` and ``['spurious']``, and their features-table
      columns (``stability``, ``{{groupby}}_best`` / ``_auroc`` / ``_f1``, ``batch_driven``).
    """
    run = sae_run(adata, sae_key, need=(), activations=True)
    check_key_added(key_added, reserved={"features": "the SAE run's features table", "params": "the run's params"})
    tech = as_list(technical, "technical")
    columns = [groupby, *([split_by] if split_by else []), *tech, *([coarse] if isinstance(coarse, str) else [])]
    for col in dict.fromkeys(columns):
        obs_codes(adata, col)  # every column exists and has two or more categories, before any work
    if coarse is not None:
        _coarse_of(adata, obs_codes(adata, groupby)[1], groupby, coarse)
    seed = resolve_seed(random_state)
    null = result(adata, "annotation_null", key=null_key, parent=sae_key, missing_ok=True)
    is_sae = run.get("params", {}).get("source") == "fit_sae"
    light = _light(adata, run, sae_key, list(dict.fromkeys(columns)))
    keys: dict[str, str] = {}
    sparse_probing(light, groupby=groupby, split_by=split_by, sae_key=sae_key, k=k, baselines=baselines,
                   random_state=seed, key_added="probing")  # fmt: skip
    keys["probing"] = "probing"
    if coarse is not None:
        feature_absorption(light, fine=groupby, coarse=coarse, sae_key=sae_key, key_added="absorption")
        keys["absorption"] = "absorption"
    feature_alignment(light, groupby=groupby, technical=tech or None, sae_key=sae_key, random_state=seed)
    keys["alignment"] = "alignment"
    if tech:
        flagged = np.flatnonzero(features_table(light, sae_key, required=True)["batch_driven"].to_numpy(dtype=bool))
        live = int((np.diff(light.obsm[f"X_{sae_key}"].tocsc().indptr) > 0).sum())
        chosen = flagged if 0 < flagged.size <= live // 2 else None  # else the top 5 by technical AUROC
        spurious_removal(light, groupby=groupby, technical=tech[0], sae_key=sae_key, features=chosen,
                         random_state=seed, key_added="spurious")  # fmt: skip
        keys["spurious"] = "spurious"
    if n_seeds and is_sae:  # the costly part last: n_seeds more fits
        feature_stability(light, sae_key=sae_key, n_seeds=n_seeds, fit_kwargs=fit_kwargs, key_added="stability")
        keys["stability"] = "stability"
    scored = sae_run(light, sae_key, need=("params", "features"))
    found = {kind: result(light, kind, key=key, parent=sae_key) for kind, key in keys.items()}
    card = pd.DataFrame(_rows(scored, found, groupby, split_by, null), columns=COLUMNS)
    card.index = card.index.astype(str)
    logger.info("evaluate:\n%s", card[["metric", "value", "baseline"]].to_string(index=False))

    adata = writable(adata, copy=copy)
    target = sae_run(adata, sae_key, need=())
    for name in [*keys.values(), "features"]:
        target[name] = scored[name]
    store_result(
        adata, "evaluation", key=key_added, parent=sae_key, tables={"scorecard": card},
        params={"groupby": groupby, "split_by": split_by, "technical": tech, "n_seeds": int(n_seeds),
                "coarse": coarse if isinstance(coarse, str) or coarse is None else "mapping",
                "k": [int(v) for v in np.atleast_1d(k)], "baselines": as_list(baselines, "baselines"),
                "random_state": seed, "results": dict(keys)},
    )  # fmt: skip
    return adata if copy else None

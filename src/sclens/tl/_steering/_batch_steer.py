"""Batch steering: clamp batch-driven SAE features to their across-batch mean and score the integration."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._docs import doc_params
from ..._features import resolve_features
from ..._readers import features_table, store_result
from ..._utils import get_rep, resolve_seed
from ._chance import baseline_table, check_chance_args, draw_sets, summarise
from ._mixing import integration_scores
from ._steer import doc_sae_key
from ._steer_core import change_codes, steer_run

logger = logging.getLogger("sclens")


def _batch_features(adata: AnnData, sae_key: str, features: Any, n_features: int) -> np.ndarray:
    if features is not None:
        return resolve_features(features, n_features)
    table = features_table(adata, sae_key)
    if not isinstance(table, pd.DataFrame) or "batch_driven" not in table.columns:
        msg = (
            f"No `batch_driven` column in `adata.uns[{sae_key!r}]['features']`; run "
            "`sl.tl.feature_alignment(adata, ...)` with the batch column first, or pass `features=[...]`."
        )
        raise KeyError(msg)
    flagged = np.flatnonzero(table["batch_driven"].astype("boolean").fillna(value=False).to_numpy(dtype=bool))
    if flagged.size == 0:
        msg = "No feature is flagged `batch_driven`: the SAE has no batch-aligned feature to steer."
        raise ValueError(msg)
    return resolve_features([int(table.index[i]) for i in flagged], n_features)


def _obs_column(adata: AnnData, key: str, param: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels of ``adata.obs[key]`` as strings and whether each cell has one (missing labels belong to no group)."""
    if not isinstance(key, str) or key not in adata.obs.columns:
        msg = f"{param}={key!r}: `adata.obs[{key!r}]` not found; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    col = adata.obs[key]
    return col.astype(str).to_numpy(), col.notna().to_numpy()


def _check_batches(batch: np.ndarray, labelled: np.ndarray, batch_key: str) -> None:
    found = np.unique(batch[labelled])
    if found.size < 2:
        msg = (
            f"batch_key={batch_key!r}: batch steering needs at least 2 batches, but `adata.obs[{batch_key!r}]` "
            f"has {found.size} among labelled cells ({list(found[:3])}); pass the column that holds the batches."
        )
        raise ValueError(msg)


def _clamp_step(run, keep: np.ndarray, codes: np.ndarray, n_batches: int, feats: np.ndarray):
    """Mean over batches of each feature's per-batch mean (labelled cells), and the embedding step of clamping to it."""
    cols = np.asarray(run.act[keep][:, feats].toarray(), dtype=np.float64)
    per_batch = np.stack([cols[codes == b].mean(axis=0) for b in range(n_batches)])  # batches x features
    mean = per_batch.mean(axis=0)
    _, dz = change_codes(run.act, feats, ["set"] * feats.size, mean)
    return mean, dz @ run.w_dec[feats]


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        msg = f"{name} must be an integer >= {low}, got {value!r}."
        raise ValueError(msg)


@doc_params(sae_key=doc_sae_key)
def batch_steer(
    adata: AnnData,
    *,
    batch_key: str,
    features: int | Sequence[int] | None = None,
    label_key: str | None = None,
    compare: Sequence[str] = (),
    sae_key: str = "sae",
    n_neighbors: int = 15,
    max_cells: int = 5000,
    n_random: int = 20,
    random_state: int | None = 0,
    key_added: str = "batch_steered",
    copy: bool = False,
) -> AnnData | None:
    r"""Remove batch-driven SAE features from an embedding and score batch mixing and biology before and after.

    For each batch-driven feature :math:`f` let :math:`\bar z_f = \frac{{1}}{{B}} \sum_b \bar z_{{f,b}}`
    be the mean over batches of its per-batch mean activation; every cell is clamped to it,
    :math:`z'_{{cf}} = \bar z_f`. The embedding moves by the decoder image of the change only,
    :math:`x' = x + \sum_f (z'_f - z_f) w_f`, as in :func:`steer`.

    Scores (kNN graph with ``n_neighbors`` neighbours): ``batch_entropy`` (normalised entropy of
    the batches among a cell's neighbours, 1 = perfectly mixed), and with ``label_key``
    ``label_purity`` (fraction of neighbours of the same cell type) and ``label_asw`` (cell-type
    silhouette rescaled to [0, 1]). Batch steering helps only when mixing rises while the label
    scores stay: compare with a batch-aware model's latent through ``compare``.

    **Against chance.** Clamping any features removes variation, batch variation included. The
    same clamp is applied to ``n_random`` sets of as many random other live features; the batch
    entropy gain of the chosen features is reported next to theirs with the empirical p-value
    ``(1 + #random sets with a gain at least as large) / (1 + n_random)``.

    Parameters
    ----------
    {adata}
    batch_key
        Column of ``adata.obs`` with the batches.
    features
        Batch-driven features to steer; ``None`` reads the boolean ``batch_driven`` column of
        ``adata.uns[sae_key]['features']`` (written by ``sl.tl.feature_alignment``).
    label_key
        Column of ``adata.obs`` with cell types, for the conservation scores.
    compare
        Further ``adata.obsm`` keys scored side by side (e.g. the latent of an scVI model trained
        with ``batch_key``).
    {sae_key}
    n_neighbors
        Neighbours of the kNN graph the scores use.
    max_cells
        At most this many cells for the silhouette.
    n_random
        Random sets of as many live features, clamped the same way (the chance baseline; each is
        scored on its own kNN graph); 0: no baseline.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with

    * ``adata.obsm[f"X_{{key_added}}"]``: the steered embedding (cells x dims of ``use_rep``);
    * ``adata.uns[key_added]``: ``scores`` (DataFrame: one row per scored embedding, the
      SAE's ``use_rep`` first, then ``f"X_{{key_added}}"`` and ``compare``; columns
      ``batch_entropy``, ``label_purity``, ``label_asw``), ``features``, ``clamped_to``
      (:math:`\bar z_f`), ``baseline`` (DataFrame: one row for the chosen features, ``"chosen"``,
      and one per random set, ``"random_0"``, ...; columns ``features`` (comma-separated),
      ``batch_entropy_gain``, ``label_purity_change``, ``label_asw_change``: steered minus
      original), and ``params`` (``batch_key``, ``label_key``, ``sae_key``, ``sae_run_id`` when
      the run has one, ``use_rep``, ``n_neighbors``, ``n_random``, ``random_state``,
      ``batch_entropy_gain`` of the chosen features, ``batch_entropy_gain_random`` (median over
      the random sets) and ``batch_entropy_gain_pvalue``, NaN with ``n_random=0``).
    """
    run = steer_run(adata, sae_key)
    _check_count("n_neighbors", n_neighbors, 1)
    _check_count("max_cells", max_cells, max(16, n_neighbors + 1))
    feats = _batch_features(adata, sae_key, features, run.n_features)
    batch, keep = _obs_column(adata, batch_key, "batch_key")
    _check_batches(batch, keep, batch_key)
    labels = None
    if label_key is not None:
        labels, has_label = _obs_column(adata, label_key, "label_key")
        keep = keep & has_label
    if not keep.all():
        logger.warning(
            "batch_steer: %d cell(s) with a missing `%s` label are left out of the batch means and scores.",
            int((~keep).sum()), "` or `".join([batch_key, *([label_key] if label_key else [])]),
        )  # fmt: skip
    n_random, _ = check_chance_args(n_random)
    seed = resolve_seed(random_state)
    others = {k: np.asarray(get_rep(adata, k), dtype=np.float64) for k in compare}
    codes, uniq = pd.factorize(batch[keep])
    live = np.flatnonzero(run.act[keep].getnnz(axis=0) > 0)
    draws = [feats, *draw_sets(np.setdiff1d(live, feats), feats.size, n_random, np.random.default_rng(seed))]
    mean, step = _clamp_step(run, keep, codes, uniq.size, feats)
    x = run.embedding(adata)
    x_new = x + step
    name = f"X_{key_added}"
    kw = {"n_neighbors": n_neighbors, "max_cells": max_cells, "seed": seed}
    lab = None if labels is None else labels[keep]
    scored = {k: v[keep] for k, v in {run.use_rep: x, name: x_new, **others}.items()}
    scores = integration_scores(scored, batch[keep], lab, **kw)
    rows = [scores.loc[name]]
    for d in draws[1:]:
        moved = (x + _clamp_step(run, keep, codes, uniq.size, d)[1])[keep]
        rows.append(integration_scores({"random": moved}, batch[keep], lab, **kw).loc["random"])
    change = pd.DataFrame(rows).to_numpy() - scores.loc[run.use_rep].to_numpy()[None, :]
    columns = ["batch_entropy_gain", "label_purity_change", "label_asw_change"]
    baseline = baseline_table(draws, [dict(zip(columns, r, strict=True)) for r in change])
    summary = summarise(baseline, "batch_entropy_gain", larger_is_better=True)
    params = {"batch_key": batch_key, "sae_key": sae_key, "use_rep": run.use_rep, "n_neighbors": n_neighbors}
    params.update({"label_key": label_key} if label_key else {})
    params.update({"n_random": n_random, "random_state": seed, **summary})
    adata = adata.copy() if copy else adata
    adata.obsm[name] = x_new.astype(np.float32)
    store_result(
        adata, "batch_steer", key=key_added, parent=None,
        tables={"scores": scores, "features": feats, "clamped_to": mean, "baseline": baseline}, params=params,
    )  # fmt: skip
    logger.info(
        "batch_steer: %d features; scores\n%s\nbatch entropy gain %.3f (random sets %.3f, p = %.3g)",
        feats.size, scores.to_string(), summary["batch_entropy_gain"], summary["batch_entropy_gain_random"],
        summary["batch_entropy_gain_pvalue"],
    )  # fmt: skip
    return adata if copy else None

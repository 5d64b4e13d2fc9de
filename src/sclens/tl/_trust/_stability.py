"""``sl.tl.feature_stability``: whether each feature comes back when the same SAE is trained with another seed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from ..._columns import write_columns
from ..._docs import doc_params
from ..._readers import result, sae_run, store_result
from ..._utils import as_dense_float32, check_key_added, get_rep, progress, writable
from .._specificity import _group_codes, feature_specificity
from ._consensus import consensus_weights

logger = logging.getLogger("sclens")

# fit_sae arguments rebuilt from a run's params (SAEConfig fields other than the sizes go to sae_kwargs)
_FIT_ARGS = ("n_features", "architecture", "k", "l1_weight", "aux_k", "aux_weight", "lr", "batch_size",
             "validation_fraction")  # fmt: skip
_SAE_KWARGS = ("dead_steps", "b_dec_init", "center", "scale", "architecture_options")
# recorded trainer_kwargs that set the training schedule (the hardware ones are this machine's choice)
_SCHEDULE = ("min_steps", "max_steps", "patience", "eval_every")


def refit_kwargs(params: dict, overrides: dict | None) -> dict[str, Any]:
    """Keyword arguments of :func:`fit_sae` that reproduce a stored run's settings (``overrides`` win)."""
    kw: dict[str, Any] = {k: params[k] for k in _FIT_ARGS if k in params}
    epochs = params.get("n_epochs", "auto")
    kw["n_epochs"] = None if epochs == "auto" else int(epochs)
    kw["sae_kwargs"] = {k: dict(params[k]) if k == "architecture_options" else params[k]
                        for k in _SAE_KWARGS if k in params}  # fmt: skip
    trainer = params.get("trainer_kwargs", {})
    kw["trainer_kwargs"] = {k: int(trainer[k]) for k in _SCHEDULE if k in trainer}
    reserved = {"random_state", "key_added", "copy", "use_rep"} & set(overrides or {})
    if reserved:
        msg = f"{sorted(reserved)} are set by feature_stability; remove them from fit_kwargs."
        raise TypeError(msg)
    return {**kw, **(overrides or {})}


def unit_rows(w: np.ndarray) -> np.ndarray:
    """Rows of ``w`` scaled to unit length (zero rows stay zero)."""
    w = np.asarray(w, dtype=np.float64)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)


def match_decoders(ref: np.ndarray, other: np.ndarray, other_live: np.ndarray | None = None):
    """One-to-one matching of two decoders' feature directions (Hungarian assignment on ``|cosine|``).

    ``ref``, ``other``: features x dims decoder matrices. Dead features of ``other`` (``other_live`` False)
    are not matched. Returns, per ``ref`` feature, its matched ``other`` feature (-1: none left) and the
    ``|cosine|`` of the pair (0 when unmatched).
    """
    cos = np.abs(unit_rows(ref) @ unit_rows(other).T)
    if other_live is not None:
        cos[:, ~np.asarray(other_live, dtype=bool)] = 0.0
    rows, cols = linear_sum_assignment(cos, maximize=True)
    matched = np.full(ref.shape[0], -1, dtype=np.int64)
    matched[rows] = cols
    score = np.zeros(ref.shape[0])
    score[rows] = cos[rows, cols]
    matched[score == 0] = -1  # paired only with a dead feature or an orthogonal direction
    return matched, score


def _seed_row(fitted: AnnData, groupby: str | None) -> dict[str, float]:
    """FVU, L0, live / dead (and with ``groupby`` local / global) counts of one refit (the paper's table S6)."""
    run = sae_run(fitted, "sae", need=("metrics",))
    act = sparse.csr_matrix(fitted.obsm["X_sae"])
    n_features = act.shape[1]
    n_dead = int((np.diff(act.tocsc().indptr) == 0).sum())
    row = {"fvu": float(run["metrics"]["fvu"]), "l0": float(np.diff(act.indptr).mean()),
           "n_live": n_features - n_dead, "n_dead": n_dead}  # fmt: skip
    if groupby is not None:
        feature_specificity(fitted, groupby=groupby)
        params = result(fitted, "specificity", key="specificity", parent="sae")["params"]
        row.update(n_local=params["n_local"], n_global=params["n_global"])
    return row


def _store_consensus(adata: AnnData, sae_key: str, key: str, runs: list, matched, cosine, keep, threshold) -> str:
    """Encode the cells with the consensus SAE, store it as the run ``key`` and say so (or why it was not)."""
    from ...sae import from_arrays, get_architecture
    from .._fit import encode

    params = dict(sae_run(adata, sae_key, need=("params",))["params"])
    n_keep = int(keep.sum())
    top_k = get_architecture(str(params.get("architecture", "topk"))).uses_k  # the registry says which use k
    if n_keep == 0 or (top_k and n_keep <= int(params.get("k", 0))):
        note = f"not stored: {n_keep} feature(s) reproduced" + (f", not more than k={params.get('k')}" if top_k else "")
        logger.warning("feature_stability: consensus %s.", note)
        return note
    weights = consensus_weights(runs, matched, cosine, keep, threshold)
    try:
        model = from_arrays({**params, "n_features": n_keep}, weights, source="the consensus weights")
    except ValueError as e:  # an architecture whose settings do not fit the smaller width
        note = f"not stored: {e}"
        logger.warning("feature_stability: consensus %s", note)
        return note
    encode(adata, sae=model, use_rep=str(params["use_rep"]), key_added=key)
    cons = sae_run(adata, key, need=("params", "features"))
    cons["params"]["consensus_of"] = sae_key
    ids = pd.DataFrame({"reference_feature": np.flatnonzero(keep).astype(np.int64)}, index=cons["features"].index)
    write_columns(adata, key, ids, writer="sl.tl.feature_stability")
    return f"stored under {key!r} ({n_keep} features)"


def _check(adata: AnnData, sae_key: str, params: dict, *, seeds, n_seeds, threshold, groupby, key_added, consensus):
    """Refuse what cannot be refitted before any training; return the seeds."""
    if params.get("source") != "fit_sae" or "use_rep" not in params:
        msg = (
            f"`adata.uns[{sae_key!r}]` was not trained by `sl.tl.fit_sae` here (source "
            f"{params.get('source')!r}); feature_stability refits it with other seeds, so fit it with "
            f"`sl.tl.fit_sae(adata, use_rep=..., key_added={sae_key!r})` first."
        )
        raise ValueError(msg)
    if not 0 < threshold <= 1:
        msg = f"threshold must be in (0, 1], got {threshold!r}."
        raise ValueError(msg)
    check_key_added(key_added, reserved={"features": "the SAE run's features table", "params": "the run's params"})
    if consensus is not None and consensus == sae_key:
        msg = f"consensus={consensus!r} would replace the run it is made from; pass another key."
        raise ValueError(msg)
    base_seed = int(params.get("random_state", 0))
    seeds = [base_seed + i for i in range(1, int(n_seeds) + 1)] if seeds is None else [int(s) for s in seeds]
    if not seeds:
        msg = "No seeds to refit with; pass n_seeds >= 1 or a non-empty `seeds`."
        raise ValueError(msg)
    if groupby is not None:
        _group_codes(adata, groupby)  # fail before any training
    return seeds


@doc_params()
def feature_stability(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    n_seeds: int = 3,
    seeds: Sequence[int] | None = None,
    threshold: float = 0.9,
    groupby: str | None = None,
    fit_kwargs: dict[str, Any] | None = None,
    consensus: str | None = None,
    key_added: str = "stability",
    copy: bool = False,
) -> AnnData | None:
    """Seed stability of every SAE feature: whether it is found again when the SAE is trained with another seed.

    The run ``adata.uns[sae_key]`` is refitted ``n_seeds`` times with :func:`sclens.tl.fit_sae` on
    the same embedding with the same settings (width, architecture and its options, ``k``, learning
    rate, epochs, batch size, validation split, the schedule of ``trainer_kwargs``: ``min_steps``,
    ``max_steps``, ``patience``, ``eval_every``, ...) and only the seed changed. The decoder
    directions of each refit are matched one-to-one to the stored run's by the Hungarian
    assignment (:func:`scipy.optimize.linear_sum_assignment`) on ``|cosine|`` (dead refit features
    are not matched). A feature's ``stability`` is the median, over the refits, of the ``|cosine|`` of its
    matched direction: 1 means it is found again exactly, values near the cosine of random
    directions mean it is an accident of one seed. The run-level ``share_reproduced`` is the
    fraction of live features with ``stability >= threshold`` (Paulo & Belrose 2025 use 0.9 and
    report that seeds share only part of their features).

    Each refit costs as much as the original fit. ``adata`` gets only the results: the refits are
    trained on a light copy of the embedding.

    Parameters
    ----------
    {adata}
    {sae_key}
    n_seeds
        Number of refits.
    seeds
        Their seeds; ``None``: the stored run's seed + 1, ..., + ``n_seeds``.
    threshold
        ``|cosine|`` at which a feature counts as reproduced.
    groupby
        Column of ``adata.obs``: also count local / global features of each refit
        (:func:`feature_specificity`, the paper's table S6).
    fit_kwargs
        Settings of :func:`sclens.tl.fit_sae` that replace the stored ones (e.g. ``trainer_kwargs``,
        ``device``, ``n_jobs``; or ``n_epochs`` for a quick, less faithful check).
    consensus
        Key under which to also store a consensus SAE: the features with ``stability >= threshold``,
        each averaged with its matches in the refits that reproduce it (``|cosine| >= threshold``,
        same sign), applied to the cells with :func:`encode`. ``None``: no consensus.
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key]['features']`` column ``stability`` (NaN for dead features);
    * ``adata.uns[sae_key][key_added]['seeds']``: DataFrame, one row per refit seed: ``fvu``, ``l0``,
      ``n_live``, ``n_dead`` (with ``groupby``: ``n_local``, ``n_global``), ``share_reproduced`` and
      ``median_cosine`` of this refit alone;
    * ``adata.uns[sae_key][key_added]['matched_cosine']`` and ``['matched_feature']``: DataFrames
      features x seeds with each feature's matched ``|cosine|`` and matched refit feature (-1: none);
    * ``adata.uns[sae_key][key_added]['params']``: ``seeds``, ``threshold``, ``share_reproduced``,
      ``median_stability``, ``n_live``, ``groupby``, the overrides, ``consensus`` (when asked:
      where it was stored, or why not), ``sae_key`` and ``sae_run_id``;
    * with ``consensus``: an SAE run ``adata.obsm['X_' + consensus]``, ``adata.uns[consensus]``
      as written by :func:`encode`, its params with ``consensus_of`` (``sae_key``) and its features table
      with ``reference_feature`` (the feature of ``sae_key`` it stands for).
    """
    from .._fit import fit_sae

    run = sae_run(adata, sae_key, arrays=("W_dec",), activations=True)
    params = dict(run["params"])
    seeds = _check(adata, sae_key, params, seeds=seeds, n_seeds=n_seeds, threshold=threshold, groupby=groupby,
                   key_added=key_added, consensus=consensus)  # fmt: skip
    kw = refit_kwargs(params, fit_kwargs)
    light = AnnData(obs=adata.obs[[groupby]].copy() if groupby else pd.DataFrame(index=adata.obs_names.copy()))
    light.obsm["X_rep"] = as_dense_float32(get_rep(adata, params["use_rep"]))
    ref = np.asarray(run["weights"]["W_dec"])
    live = np.diff(sparse.csr_matrix(adata.obsm[f"X_{sae_key}"]).tocsc().indptr) > 0

    cosine = np.zeros((ref.shape[0], len(seeds)))
    matched = np.full((ref.shape[0], len(seeds)), -1, dtype=np.int64)
    rows, weights = {}, [dict(run["weights"])]
    for j, seed in enumerate(progress(seeds, desc="feature_stability", unit="seed")):
        fitted = fit_sae(light, use_rep="X_rep", random_state=seed, key_added="sae", copy=True, **kw)
        other_live = np.diff(sparse.csr_matrix(fitted.obsm["X_sae"]).tocsc().indptr) > 0
        refit = sae_run(fitted, "sae", arrays=("W_dec",))
        matched[:, j], cosine[:, j] = match_decoders(ref, refit["weights"]["W_dec"], other_live)
        weights.append(dict(refit["weights"]))
        row = _seed_row(fitted, groupby)
        row["share_reproduced"] = float((cosine[live, j] >= threshold).mean()) if live.any() else np.nan
        row["median_cosine"] = float(np.median(cosine[live, j])) if live.any() else np.nan
        rows[str(seed)] = row
        logger.info(
            "feature_stability: seed %d: %.0f%% of live features reproduced", seed, 100 * row["share_reproduced"]
        )
    stability = np.where(live, np.median(cosine, axis=1), np.nan)
    share = float((stability[live] >= threshold).mean()) if live.any() else np.nan
    keep = live & (stability >= threshold)
    logger.info(
        "feature_stability: %.0f%% of %d live features reproduced at |cos| >= %g", 100 * share, live.sum(), threshold
    )

    index = pd.Index([str(i) for i in range(ref.shape[0])])
    cols = pd.Index([str(s) for s in seeds])
    adata = writable(adata, copy=copy)
    write_columns(adata, sae_key, pd.DataFrame({"stability": stability}, index=index), writer="sl.tl.feature_stability",
                  n_features=ref.shape[0])  # fmt: skip
    tables = {
        "seeds": pd.DataFrame.from_dict(rows, orient="index"),
        "matched_cosine": pd.DataFrame(cosine, index=index, columns=cols),
        "matched_feature": pd.DataFrame(matched, index=index, columns=cols),
    }
    note = None
    if consensus is not None:
        note = _store_consensus(adata, sae_key, consensus, weights, matched, cosine, keep, threshold)
    store_result(
        adata, "stability", key=key_added, parent=sae_key, tables=tables,
        params={"seeds": np.asarray(seeds, dtype=np.int64), "threshold": float(threshold), "share_reproduced": share,
                "median_stability": float(np.median(stability[live])) if live.any() else np.nan,
                "n_live": int(live.sum()), "groupby": groupby, "fit_kwargs": dict(fit_kwargs or {}),
                "consensus": note},
    )  # fmt: skip
    return adata if copy else None

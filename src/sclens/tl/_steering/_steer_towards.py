"""Steer one group of cells towards another: choose the SAE features whose change moves them there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from ..._docs import doc_params
from ..._network import GeneSetsLike
from ..._readers import result, store_result
from ..._utils import resolve_seed
from ._chance import (
    STRENGTHS,
    baseline_table,
    check_chance_args,
    dose_table,
    draw_sets,
    log2_ratio,
    scaled_change,
    summarise,
)
from ._steer import (
    doc_chance,
    doc_chance_returns,
    doc_decoders,
    doc_paired_returns,
    doc_sae_key,
    steer_params,
    steered_table,
)
from ._steer_core import change_codes, check_decoder, decode_pair, paired_result, select_cells, steer_run

logger = logging.getLogger("sclens")

MAX_CANDIDATES = 2000
MIN_GAIN = 0.01  # a step must remove at least 1% of the initial objective


def greedy_selection(
    x: np.ndarray, z: np.ndarray, m_t: np.ndarray, w: np.ndarray, mu_t: np.ndarray, *, max_features: int
) -> tuple[list[int], list[float]]:
    """Forward selection of columns of ``z`` to set to ``m_t`` minimising the mean squared distance to ``mu_t``.

    ``x``: source embeddings (n x d), ``z``: their codes of the candidate features (n x c, dense),
    ``m_t``: the candidates' target means (c), ``w``: their decoder rows (c x d). Setting candidate
    ``j`` moves cell ``s`` by ``d_sj w_j`` with ``d_sj = m_t[j] - z[s, j]``, which changes the
    objective by ``2 mean_s(d_sj r_s . w_j) + mean_s(d_sj^2) |w_j|^2`` (``r_s``: the cell's current
    offset from ``mu_t``). Returns the chosen candidate positions and the objective after each step
    (first entry: before any change).
    """
    d = (m_t[None, :] - z).astype(np.float64)
    r = x - mu_t[None, :]
    norms2 = (w**2).sum(axis=1)
    quad = (d**2).mean(axis=0) * norms2
    objective = [float((r**2).sum(axis=1).mean())]
    chosen: list[int] = []
    while len(chosen) < max_features:
        gain = 2 * (d * (r @ w.T)).mean(axis=0) + quad
        gain[chosen] = np.inf
        j = int(np.argmin(gain))
        if not gain[j] < -MIN_GAIN * objective[0]:
            break
        chosen.append(j)
        r += d[:, j : j + 1] * w[j][None, :]
        objective.append(float((r**2).sum(axis=1).mean()))
    return chosen, objective


def _candidates(z_src, z_tgt, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features active in either group, at most MAX_CANDIDATES by the size of their mean shift."""
    m_s = np.asarray(z_src.mean(axis=0)).ravel()
    m_t = np.asarray(z_tgt.mean(axis=0)).ravel()
    shift = np.abs(m_t - m_s) * np.linalg.norm(w, axis=1)
    live = np.flatnonzero((m_s > 0) | (m_t > 0))
    cand = live[np.argsort(-shift[live], kind="stable")[:MAX_CANDIDATES]]
    return np.sort(cand), m_t


def target_markers(
    expr_src: np.ndarray, expr_tgt: np.ndarray, var_names: pd.Index, n_markers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``n_markers`` genes most up in the target, and every gene's log2 ratio target / source.

    Ratios of the means of library-normalised (decoded) expression, with 1e-5 added to each mean.
    """
    lfc = log2_ratio(expr_src, expr_tgt)
    order = np.argsort(-lfc, kind="stable")
    order = order[lfc[order] > 0][:n_markers]
    return np.asarray(var_names[order]).astype(str), lfc


def expression_scores(lfc: np.ndarray, is_marker: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Return ``marker_shift`` and ``de_correlation`` of a steering's log2 ratios ``lfc``.

    ``marker_shift``: median log2 ratio of the markers minus that of the other genes;
    ``de_correlation``: Spearman correlation of the log2 ratios with the target-vs-source ones.
    """
    ok = np.isfinite(lfc) & np.isfinite(expected)
    return {
        "marker_shift": float(np.median(lfc[is_marker & ok]) - np.median(lfc[~is_marker & ok])),
        "de_correlation": float(stats.spearmanr(lfc[ok], expected[ok]).statistic),
    }


def marker_report(out: AnnData, markers: np.ndarray, gene_sets: Any) -> dict[str, Any]:
    """DE of perturbed vs normal cells (``sl.tl.contrast``), and whether the target's markers go up."""
    from ..._network import as_network
    from .._annotation._annotate import contrast

    net = pd.DataFrame(
        {"source": "target_markers", "target": markers, "name": "markers of the target", "namespace": ""}
    )
    if gene_sets is not None:
        net = pd.concat([as_network(gene_sets), net], ignore_index=True)
    # pairs whose normal or perturbed state has no predicted count cannot be size-normalised: left out
    lib = np.asarray(out.layers["counts"].sum(axis=1)).ravel()
    n = out.n_obs // 2
    keep = np.tile((lib[:n] > 0) & (lib[n:] > 0), 2)
    tested = out if keep.all() else out[keep].copy()
    contrast(
        tested, groupby="condition", groups="perturbed", reference="normal", layer="counts", gene_sets=net,
        min_size=min(5, markers.size), key_added="contrast",
    )  # fmt: skip
    out.uns["contrast"] = tested_contrast = result(tested, "contrast", key="contrast")
    lfc = tested_contrast["de"]["log2fc"].to_numpy()
    is_marker = out.var_names.isin(markers)
    ok = np.isfinite(lfc)
    res = tested_contrast["results"]
    hit = res[res["term"] == "target_markers"]
    return {
        "markers": markers,
        "markers_up": float((lfc[is_marker & ok] > 0).mean()),
        "markers_log2fc": float(np.nanmedian(lfc[is_marker])),
        "others_log2fc": float(np.nanmedian(lfc[~is_marker])),
        "markers_rank_pvalue": float(
            stats.mannwhitneyu(lfc[is_marker & ok], lfc[~is_marker & ok], alternative="greater").pvalue
        ),
        "markers_enriched": bool(len(hit)),
        "n_pairs_tested": int(keep.sum() // 2),
    }


def _select(adata: AnnData, run, src: np.ndarray, tgt: np.ndarray, max_features: int, seed: int, max_cells: int):
    """Chosen features (SAE indices), their target means, the objective trace, the target centroid, all target means."""
    mu_t = run.embedding(adata, tgt).mean(axis=0)
    cand, m_t = _candidates(run.act[src], run.act[tgt], run.w_dec)
    if cand.size == 0:
        msg = "No SAE feature is active in the source or the target cells; check `source` / `target`."
        raise ValueError(msg)
    sub = src if src.size <= max_cells else np.sort(np.random.default_rng(seed).choice(src, max_cells, replace=False))
    z_sub = np.asarray(run.act[sub][:, cand].toarray(), dtype=np.float64)
    chosen, objective = greedy_selection(
        run.embedding(adata, sub), z_sub, m_t[cand], run.w_dec[cand], mu_t, max_features=max_features
    )
    if not chosen:
        msg = (
            "No feature moves the source cells towards the target by at least 1% of their mean squared "
            "distance to the target centroid; the two groups may differ only in the SAE's reconstruction error."
        )
        raise ValueError(msg)
    feats = cand[chosen]
    return feats, m_t[feats], np.asarray(objective), mu_t, m_t


def _towards_chance(
    adata: AnnData,
    run,
    src: np.ndarray,
    feats: np.ndarray,
    mu_t: np.ndarray,
    m_t: np.ndarray,
    *,
    n_random: int,
    strengths: np.ndarray,
    seed: int,
    scores_of: Any,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Distance ratios (and expression scores) of the chosen features and of random sets set to the target means.

    Random features are drawn among the other features active in the source or the target.
    ``scores_of(x_new)``: :func:`expression_scores` of the source cells moved to ``x_new`` (``None``: no decoder).
    Returns the ``baseline`` and ``dose_response`` tables and the summaries (params).
    """
    m_s = np.asarray(run.act[src].mean(axis=0)).ravel()
    pool = np.setdiff1d(np.flatnonzero((m_s > 0) | (m_t > 0)), feats)
    draws = [feats, *draw_sets(pool, feats.size, n_random, np.random.default_rng(seed))]
    z = run.act[src].tocsc()
    x = run.embedding(adata, src)
    offset = x - mu_t[None, :]
    before = float(np.linalg.norm(offset, axis=1).mean())
    rows, curves, dists = [], [], []
    for d in draws:
        old = np.asarray(z[:, d].toarray(), dtype=np.float64)
        new = np.broadcast_to(m_t[d], old.shape)
        w = run.w_dec[d]
        curves.append(
            [np.linalg.norm(offset + scaled_change(old, new, s) @ w, axis=1).mean() / before for s in strengths]
        )
        step = (new - old) @ w
        dists.append(np.linalg.norm(offset + step, axis=1))
        row = {"distance_ratio": float(dists[-1].mean() / before)}
        if scores_of is not None:
            row.update(scores_of(x + step))
        rows.append(row)
    table = baseline_table(draws, rows)
    params = {"distance_before": before, "distance_after": float(dists[0].mean())}
    params.update({"n_random": n_random, "random_state": seed, "dose_metric": "distance_ratio"})
    params.update(summarise(table, "distance_ratio", larger_is_better=False))
    for metric in ("marker_shift", "de_correlation"):
        if metric in table:
            params.update(summarise(table, metric, larger_is_better=True))
    median_random = np.median(dists[1:], axis=0) if n_random else None
    params["frac_closer_than_random"] = (
        float("nan") if median_random is None else float((dists[0] < median_random).mean())
    )
    return {"baseline": table, "dose_response": dose_table(strengths, np.asarray(curves))}, params


@doc_params(
    sae_key=doc_sae_key, decoders=doc_decoders, paired_returns=doc_paired_returns,
    chance=doc_chance, chance_returns=doc_chance_returns,
)  # fmt: skip
def steer_towards(
    adata: AnnData,
    *,
    source: Mapping[str, Any] | Sequence[str] | np.ndarray,
    target: Mapping[str, Any] | Sequence[str] | np.ndarray,
    model: Any = None,
    decode: Callable[[np.ndarray, AnnData], np.ndarray] | None = None,
    max_features: int = 20,
    markers: Sequence[str] | None = None,
    n_markers: int = 20,
    gene_sets: GeneSetsLike | None = None,
    sae_key: str = "sae",
    library_size: float | None = None,
    batch_size: int = 512,
    max_cells: int = 2000,
    n_random: int = 50,
    strengths: Sequence[float] = STRENGTHS,
    random_state: int | None = 0,
    key_added: str = "steer_towards",
) -> AnnData:
    r"""Choose the SAE features that move ``source`` cells towards ``target`` cells, steer them and test the result.

    **Objective.** Steering feature :math:`f` sets it, in every source cell, to its mean
    activation :math:`\bar z^T_f` in the target (the paper's "set to a group's mean"). With
    source embeddings :math:`x_s`, codes :math:`z_s`, decoder rows :math:`w_f` and target
    centroid :math:`\mu_T`, a set :math:`S` of features gives
    :math:`x'_s = x_s + \sum_{{f \in S}} (\bar z^T_f - z_{{sf}})\, w_f` (the error-preserving
    decode of :func:`steer`), and the features are chosen greedily (forward selection, as
    orthogonal matching pursuit) to minimise

    .. math:: J(S) = \frac{{1}}{{n}} \sum_s \lVert x'_s - \mu_T \rVert^2,

    adding at each step the feature with the largest decrease, until ``max_features`` are chosen
    or no feature removes 1% of :math:`J(\emptyset)`. Candidates are the features active in either
    group (at most 2,000, those with the largest mean shift times decoder norm); selection runs on
    at most ``max_cells`` source cells.

    **Report.** ``distance_ratio``: the mean Euclidean distance (in ``use_rep``) of the steered
    source cells to the target centroid divided by that before steering. With a decoder, the
    target's marker genes (``markers``, or the ``n_markers`` genes most up in the decoded target vs
    source expression) are checked in the DE of perturbed vs normal source cells run with
    :func:`sclens.tl.contrast` on the predicted counts (so only with a decoder at count scale:
    ``model`` with ``library_size=None``, or a ``decode`` returning non-negative values; cell pairs
    with no predicted count are left out of the DE).

    **Against chance.** Moving cells towards a centroid is easy: setting random features to the
    target's means brings every source cell closer too (measured numbers in the docs page
    "Steering: what it predicts and when to trust it"). So ``n_random`` sets of as many random features
    active in the source or the target are set to their target means in the same cells, and the
    chosen features' ``distance_ratio``, ``marker_shift`` and ``de_correlation`` are reported next
    to the random draws' with empirical p-values. ``frac_closer_than_random`` is the fraction of
    source cells that end closer to the target centroid than under the median random draw (about
    0.5 when the choice is no better than chance). The dose-response curve is ``distance_ratio``
    per strength.

    Parameters
    ----------
    {adata}
    source
        Cells to steer: a mapping ``{{obs column: value or values}}``, a boolean mask or cell names.
    target
        Cells to steer towards, given the same way; must not overlap ``source``.
    {decoders}
    max_features
        At most this many features are changed.
    markers
        Marker genes of the target checked in the DE; ``None`` takes the ``n_markers`` genes most
        up in the decoded target vs source expression.
    n_markers
        Number of markers chosen when ``markers`` is ``None``.
    gene_sets
        Gene sets (as in :func:`sclens.tl.contrast`) tested for enrichment in the DE besides the
        target's markers; ``None``: only the markers.
    {sae_key}
    max_cells
        At most this many source cells (a random subset) are used to choose the features; all are steered.
    {chance}
    {random_state}
    {key_added}

    Returns
    -------
    {paired_returns}
    * ``uns[key_added]['features']``: as :func:`steer`, in the order chosen (``amount``: the target
      means); ``['objective']``: :math:`J` before and after each chosen feature;
      ``['target_centroid']``: :math:`\mu_t`;
    * ``uns[key_added]['params']``: as :func:`steer`, plus ``source``, ``target``, ``n_target``,
      ``distance_before`` / ``distance_after`` (mean distance to the centroid); with a decoder also
      ``markers``, ``markers_up`` (fraction of markers with DE log2 fold change > 0),
      ``markers_log2fc`` / ``others_log2fc`` (DE medians), ``markers_rank_pvalue`` (one-sided
      Mann-Whitney test, markers vs other genes), ``markers_enriched`` (the marker set passes the
      contrast's enrichment test), ``n_pairs_tested``;
    {chance_returns}
      Metrics: ``distance_ratio`` (the ``dose_metric``; lower is better) and, with a decoder,
      ``marker_shift`` (median log2 ratio of the markers minus that of the other genes) and
      ``de_correlation`` (Spearman correlation of the steering's log2 ratios with the
      target-vs-source ones); these log2 ratios are of the mean library-normalised predicted
      expression, perturbed / normal, computed the same way for every set (no DE test). Also in
      ``params``: ``frac_closer_than_random``, the fraction of source cells closer to the target
      centroid than under the median random set;
    * ``uns['contrast']``: the DE (``de``) and enriched gene sets (``results``) of perturbed vs normal.
    """
    run = steer_run(adata, sae_key)
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 1:
        msg = f"max_features must be a positive integer, got {max_features!r}."
        raise ValueError(msg)
    src, tgt = select_cells(adata, source, name="source"), select_cells(adata, target, name="target")
    if np.intersect1d(src, tgt).size:
        msg = f"source and target share {np.intersect1d(src, tgt).size} cell(s); choose disjoint groups."
        raise ValueError(msg)
    check_decoder(adata, model, decode)
    given_markers = None if markers is None else _check_markers(markers, adata.var_names)
    n_random, grid = check_chance_args(n_random, strengths)
    seed = resolve_seed(random_state)
    feats, amounts, objective, mu_t, m_t = _select(adata, run, src, tgt, max_features, seed, max_cells)

    x = run.embedding(adata, src)
    z = run.act[src]
    z_new, dz = change_codes(z, feats, ["set"] * feats.size, amounts)
    x_new = x + dz @ run.w_dec[feats]
    kw = {"model": model, "decode": decode, "library_size": library_size, "batch_size": batch_size}
    expr, decoder = decode_pair(adata, src, (x, x_new), **kw)
    out = paired_result(
        adata, src, x=x, x_new=x_new, z=z, z_new=z_new, expr=expr, decoder=decoder,
        library_size=library_size, use_rep=run.use_rep, sae_key=sae_key,
    )  # fmt: skip
    scores_of = chosen = None
    if expr is not None and "counts" in out.layers:
        expr_tgt = decode_pair(adata, tgt, (run.embedding(adata, tgt),), **kw)[0][0]
        found, expected = target_markers(expr[0], expr_tgt, adata.var_names, n_markers)
        chosen = found if given_markers is None else given_markers
        is_marker = adata.var_names.isin(chosen)

        def scores_of(x_moved: np.ndarray) -> dict[str, float]:
            moved = decode_pair(adata, src, (x_moved,), **kw)[0][0]
            return expression_scores(log2_ratio(expr[0], moved), is_marker, expected)

    tables, chance = _towards_chance(
        adata, run, src, feats, mu_t, m_t, n_random=n_random, strengths=grid, seed=seed, scores_of=scores_of
    )
    info = {
        **steer_params(run, sae_key=sae_key, idx=src, decoder=decoder),
        "source": _describe(source), "target": _describe(target), "n_target": int(tgt.size),
        **chance,
    }  # fmt: skip
    if chosen is not None:
        info.update(marker_report(out, chosen, gene_sets))
    n = feats.size
    table = steered_table(feats, ["set"] * n, ["target mean"] * n, np.ones(n), amounts, dz.mean(axis=0))
    store_result(
        out, "steer_towards", key=key_added, parent=None, params=info,
        tables={
            "features": table, "objective": np.asarray(objective, dtype=np.float64), "target_centroid": mu_t,
            **tables,
        },
    )  # fmt: skip
    logger.info(
        "steer_towards: %d features, distance to the target x%.2f (random sets x%.2f, p = %.3g)",
        feats.size, info["distance_ratio"], info["distance_ratio_random"], info["distance_ratio_pvalue"],
    )  # fmt: skip
    return out


def _describe(cells: Any) -> str:
    if isinstance(cells, Mapping):
        return ", ".join(f"{k}={v}" for k, v in cells.items())
    arr = np.asarray(cells)
    n = int(arr.sum()) if arr.dtype == bool else arr.size
    return f"{n} cells"


def _check_markers(markers: Sequence[str], var_names: pd.Index) -> np.ndarray:
    genes = np.asarray([str(g) for g in markers])
    missing = genes[~np.isin(genes, var_names.astype(str))]
    if missing.size or genes.size == 0:
        msg = (
            f"markers must be genes of `adata.var_names`; not found: {[str(g) for g in missing[:5]]} (of {genes.size})."
        )
        raise ValueError(msg)
    return genes

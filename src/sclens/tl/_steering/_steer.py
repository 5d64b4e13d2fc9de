"""Steering: set, raise or knock out SAE features in chosen cells and predict the expression change (paper sec. 5.2)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._docs import doc_params
from ..._features import resolve_features
from ..._readers import store_result
from ..._utils import resolve_seed
from ._chance import (
    STRENGTHS,
    baseline_table,
    check_chance_args,
    dose_table,
    draw_sets,
    expression_shift,
    scaled_change,
    summarise,
)
from ._steer_core import (
    change_codes,
    check_decoder,
    decode_pair,
    new_columns,
    paired_result,
    per_feature,
    resolve_amount,
    select_cells,
    steer_run,
)

logger = logging.getLogger("sclens")

doc_sae_key = """\
sae_key
    Key of the SAE run read: activations in ``adata.obsm[f"X_{sae_key}"]``, decoder weights and
    parameters in ``adata.uns[sae_key]``."""

doc_decoders = """\
model
    Trained scvi-tools model (SCVI, SCANVI, LinearSCVI; batch and other covariates are kept per
    cell) whose latent space is the SAE's input embedding; its decoder predicts expression
    (``module.generative`` in eval mode).
decode
    Alternative to ``model``: a callable ``decode(embedding, cells)`` taking the embeddings
    (cells x dims) and the AnnData view of the steered cells, returning expression (cells x
    ``adata.n_vars``); non-negative output is taken as expression at count scale.
library_size
    With ``model``: ``None`` predicts the negative-binomial mean at each cell's own library
    size, a number gives normalised expression scaled to that library size.
batch_size
    Cells per minibatch when decoding through ``model``."""

doc_chance = """\
n_random
    Random sets of as many live features, steered by the same rule (the chance baseline; each
    draw decodes the cells once more with ``model`` / ``decode``); 0: no baseline.
strengths
    Strengths of the dose-response curve: each cell's code change :math:`z' - z` is scaled by the
    strength (codes kept >= 0); 1 is the steering asked for."""

doc_chance_returns = """\
* the chance baseline: ``uns[key_added]['baseline']``, a DataFrame with one row for the chosen
  features (``"chosen"``) and one per random set (``"random_0"``, ...): their ``features``
  (comma-separated) and the metrics; ``['dose_response']``, a DataFrame with ``strength``,
  ``chosen``, ``random_median``, ``random_q05``, ``random_q95`` of the metric named by
  ``params['dose_metric']``; in ``['params']``: ``n_random``, ``random_state``, ``dose_metric``
  and for each metric ``m``: ``m`` (chosen features), ``m_random`` (median over the random sets)
  and ``m_pvalue`` (empirical, ``(1 + #sets at least as good) / (1 + n_random)``; NaN with
  ``n_random=0``)."""


doc_paired_returns = """\
A new AnnData with two rows per steered cell (``obs['condition']`` ``"normal"`` /
``"perturbed"``, ``obs['cell']`` the original cell name, the original obs columns), ready for
``sl.tl.contrast(steered, groupby="condition", groups="perturbed", reference="normal", layer="counts")``:

* ``X``: predicted expression (genes as in ``adata.var``) when ``model`` or ``decode`` is
  given; otherwise ``X`` is empty (no variables);
* ``layers['counts']``: the predicted expression rounded to integers (predicted counts, as the
  paper tested) with ``model`` and ``library_size=None``, or a ``decode`` returning non-negative
  values;
* ``obsm[use_rep]``: embeddings :math:`x` and :math:`x'`; ``obsm[f"X_{{sae_key}}"]``: codes
  :math:`z` and :math:`z'` (CSR);"""


def steer_params(run, *, sae_key: str, idx: np.ndarray, decoder: str) -> dict[str, Any]:
    """Provenance shared by every steering result."""
    out = {"sae_key": sae_key, "use_rep": run.use_rep, "n_cells": int(idx.size), "decoder": decoder}
    if run.run_id is not None:
        out["sae_run_id"] = run.run_id
    return out


def steered_table(feats: np.ndarray, modes, values, factors, amounts, mean_change: np.ndarray) -> pd.DataFrame:
    """One row per steered feature, in the order given (index ``feature``: the feature numbers)."""
    return pd.DataFrame(
        {
            "mode": np.asarray([str(m) for m in modes], dtype=object),
            "value": np.asarray([str(v) for v in values], dtype=object),
            "factor": np.asarray(factors, dtype=np.float64),
            "amount": np.asarray(amounts, dtype=np.float64),
            "mean_change": np.asarray(mean_change, dtype=np.float64),
        },
        index=pd.Index(np.asarray(feats, dtype=np.int64), name="feature"),
    )


def _steer_chance(
    adata: AnnData,
    run,
    idx: np.ndarray,
    feats: np.ndarray,
    rule: tuple[list, list, list],
    *,
    n_random: int,
    strengths: np.ndarray,
    seed: int,
    expr_before: np.ndarray | None,
    decode_kw: dict[str, Any],
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Baseline and dose-response tables, and summaries (params), of a steering: chosen features, then random sets.

    ``rule``: each steered feature's mode, value and factor, applied to the random feature in its
    place; ``expr_before``: the decoded expression of the unsteered cells (``None``: no decoder), each
    draw's steered cells are decoded with ``decode_kw`` (arguments of :func:`decode_pair`).
    """
    modes, values, factors = rule
    live = np.flatnonzero(run.act.getnnz(axis=0) > 0)
    draws = [feats, *draw_sets(np.setdiff1d(live, feats), feats.size, n_random, np.random.default_rng(seed))]
    z = run.act[idx].tocsc()
    x = run.embedding(adata, idx)
    rows, curves = [], []
    for d in draws:
        columns = run.act[:, d].tocsc()
        amounts = [
            resolve_amount(adata, columns[:, j].toarray().ravel(), values[j], factors[j], modes[j])
            for j in range(d.size)
        ]
        old = np.asarray(z[:, d].toarray(), dtype=np.float64)
        new = new_columns(old, modes, amounts)
        w = run.w_dec[d]
        curves.append([np.linalg.norm(scaled_change(old, new, s) @ w, axis=1).mean() for s in strengths])
        step = (new - old) @ w
        row = {"displacement": float(np.linalg.norm(step, axis=1).mean())}
        if expr_before is not None:
            after = decode_pair(adata, idx, (x + step,), **decode_kw)[0][0]
            row["expression_shift"] = expression_shift(expr_before, after)
        rows.append(row)
    table = baseline_table(draws, rows)
    params = {"n_random": n_random, "random_state": seed, "dose_metric": "displacement"}
    for metric in table.columns[1:]:
        params.update(summarise(table, metric, larger_is_better=True))
    return {"baseline": table, "dose_response": dose_table(strengths, np.asarray(curves))}, params


@doc_params(
    sae_key=doc_sae_key, decoders=doc_decoders, paired_returns=doc_paired_returns,
    chance=doc_chance, chance_returns=doc_chance_returns,
)  # fmt: skip
def steer(
    adata: AnnData,
    *,
    features: int | Sequence[int],
    cells: Mapping[str, Any] | Sequence[str] | np.ndarray | None = None,
    value: float | str | Mapping[str, Any] | Sequence[Any] = "max",
    factor: float | Sequence[float] = 1.0,
    mode: Literal["set", "add", "knockout"] | Sequence[str] = "set",
    model: Any = None,
    decode: Callable[[np.ndarray, AnnData], np.ndarray] | None = None,
    sae_key: str = "sae",
    library_size: float | None = None,
    batch_size: int = 512,
    n_random: int = 50,
    strengths: Sequence[float] = STRENGTHS,
    random_state: int | None = 0,
    key_added: str = "steer",
) -> AnnData:
    r"""Set, raise or knock out SAE features in chosen cells and predict their embedding and expression.

    For each chosen cell with embedding :math:`x` and SAE code :math:`z`, the steered features get
    new activations, giving :math:`z'`, and the perturbed embedding is

    .. math:: x' = x + \mathrm{{dec}}(z') - \mathrm{{dec}}(z) = x + \sum_f (z'_f - z_f)\, W_{{dec}}[f],

    so each cell keeps its SAE reconstruction error and only the steered features' decoder
    directions move (decoder weights ``adata.uns[sae_key]['weights']``). With an scvi-tools
    ``model`` (or a ``decode`` callable) the expression of both states is predicted at the same
    library size, batch and covariates of each cell.

    **Against chance.** The same rule (mode, value, factor) is applied to ``n_random`` sets of as
    many random live features in the same cells. ``displacement`` is the mean distance each cell
    moves in the embedding, and with a decoder returning non-negative expression
    ``expression_shift`` the mean share of a cell's predicted expression that moves (half the L1
    distance of the library-normalised profiles); their p-values ask whether the chosen features
    change the cells more than random ones steered the same way. A small displacement p-value
    says the features matter for these cells (a knockout of features they use); setting any
    feature to its maximum moves cells about as much, and then the p-value is large. The
    dose-response curve is ``displacement`` per strength.

    Parameters
    ----------
    {adata}
    features
        Index of the SAE feature to steer, or a sequence of them (steered together).
    cells
        Cells to steer: ``None`` (all), a mapping ``{{obs column: value or list of values}}``, a
        boolean mask or a list of cell names.
    value
        With ``mode="set"`` the activation set, with ``"add"`` the amount added: ``"max"``
        (largest activation of the feature in the data, the paper's "maximising"), a number, a
        percentile of the feature's non-zero activations such as ``"p99"``, or a mapping
        selecting a group whose mean activation is used (the paper steered toward the normoblast
        mean: ``value={{"cell_type": "Normoblast"}}, factor=1.5``). A list gives one value per feature.
    factor
        Multiplier applied to the value (one, or one per feature).
    mode
        ``"set"`` the feature to the value, ``"add"`` the value (negative lowers; activations
        stay >= 0), or ``"knockout"`` (set to 0 where active; ``value`` is ignored). One, or one
        per feature.
    {decoders}
    {chance}
    {random_state}
    {sae_key}
    {key_added}

    Returns
    -------
    {paired_returns}
    * ``uns[key_added]['features']``: DataFrame, one row per steered feature (index ``feature``, the
      feature numbers in the order given) with ``mode``, ``value``, ``factor``, ``amount``
      (activation set, amount added, or 0) and ``mean_change`` (mean :math:`z'_f - z_f` of the
      steered cells);
    * ``uns[key_added]['params']``: ``sae_key``, ``sae_run_id`` (when the SAE run has one),
      ``use_rep``, ``n_cells``, ``decoder`` (``"scvi"``, ``"callable"`` or ``"none"``);
    {chance_returns}
      Metrics: ``displacement`` (the ``dose_metric``; larger is better) and, with a decoder
      returning non-negative expression, ``expression_shift``.
    """
    run = steer_run(adata, sae_key)
    feats = resolve_features(features, run.n_features)
    modes = per_feature(mode, feats.size, "mode")
    values = per_feature(value, feats.size, "value")
    factors = per_feature(factor, feats.size, "factor")
    act_csc = run.act[:, feats].tocsc()
    amounts = []
    for j, f in enumerate(feats):
        column = act_csc[:, j].toarray().ravel()
        if column.max() <= 0 and modes[j] != "add":
            msg = f"feature {f} is dead (never active in these cells); steer a live feature instead."
            raise ValueError(msg)
        amounts.append(resolve_amount(adata, column, values[j], factors[j], modes[j]))
    check_decoder(adata, model, decode)
    n_random, grid = check_chance_args(n_random, strengths)
    seed = resolve_seed(random_state)
    idx = select_cells(adata, cells)

    x = run.embedding(adata, idx)
    z = run.act[idx]  # sparse: a dense cells x features copy can be far larger than the data
    z_new, dz = change_codes(z, feats, modes, amounts)
    x_new = x + dz @ run.w_dec[feats]
    kw = {"model": model, "decode": decode, "library_size": library_size, "batch_size": batch_size}
    expr, decoder = decode_pair(adata, idx, (x, x_new), **kw)
    tables, chance = _steer_chance(
        adata, run, idx, feats, (modes, values, factors), n_random=n_random, strengths=grid, seed=seed,
        expr_before=expr[0] if expr is not None and min(e.min() for e in expr) >= 0 else None, decode_kw=kw,
    )  # fmt: skip
    out = paired_result(
        adata, idx, x=x, x_new=x_new, z=z, z_new=z_new, expr=expr, decoder=decoder,
        library_size=library_size, use_rep=run.use_rep, sae_key=sae_key,
    )  # fmt: skip
    store_result(
        out, "steer", key=key_added, parent=None,
        tables={"features": steered_table(feats, modes, values, factors, amounts, dz.mean(axis=0)), **tables},
        params={**steer_params(run, sae_key=sae_key, idx=idx, decoder=decoder), **chance},
    )  # fmt: skip
    logger.info(
        "steer: %d feature(s) changed in %d cells (decoder: %s); displacement %.3g (random median %.3g, p = %.3g)",
        feats.size, idx.size, decoder, chance["displacement"], chance["displacement_random"],
        chance["displacement_pvalue"],
    )  # fmt: skip
    return out

"""A grid of SAE settings on one embedding, scored by reconstruction, sparsity and recovery."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._readers import sae_run
from .._settings import logger
from .._utils import as_dense_float32, check_adata, get_rep, progress, resolve_seed
from ._recovery import live_features, per_variable_table, summarize
from ._targets import resolve_targets, subsample, target_matrix

DEFAULT_GRID: dict[str, list[Any]] = {"architecture": ["topk"], "expansion_factor": [4, 8], "k": [4, 8]}


def _settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    if not isinstance(grid, Mapping) or not grid:
        msg = "grid must be a non-empty dict {fit_sae argument: list of values}, e.g. {'k': [4, 8]}."
        raise TypeError(msg)
    reserved = {"use_rep", "key_added", "copy", "random_state"} & set(grid)
    if reserved:
        msg = f"grid cannot set {sorted(reserved)}; pass random_state to sweep itself."
        raise ValueError(msg)
    values = [v if isinstance(v, (list, tuple, np.ndarray)) else [v] for v in grid.values()]
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*values)]


@doc_params()
def sweep(
    adata: AnnData,
    *,
    use_rep: str = "X_ae",
    grid: Mapping[str, Sequence[Any]] | None = None,
    targets: Sequence[str] | Mapping[str, str] | None = ("X''", "X"),
    threshold: float = 0.9,
    max_cells: int | None = 20_000,
    random_state: int | None = 0,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Train one SAE per combination of settings with ``sl.tl.fit_sae`` and score each.

    Every combination of the values in ``grid`` is passed to :func:`sclens.tl.fit_sae` on a
    light copy of the data (``adata`` itself is not modified). Each SAE is scored by its FVU, L0,
    dead fraction and live features (from ``uns['sae']['metrics']``) and by the recovery of
    the hidden variables, as in :func:`sclens.sim.recovery` (without baselines).

    Parameters
    ----------
    {adata}
    {use_rep}
    grid
        ``{{fit_sae argument: list of values}}``; default
        ``{{"architecture": ["topk"], "expansion_factor": [4, 8], "k": [4, 8]}}``.
    targets
        Variable families scored (see :func:`sclens.sim.recovery`).
    threshold
        Absolute correlation above which a feature matches a variable.
    max_cells
        Cells (random subset) used for the recovery scores; the SAEs train on all cells.
    {random_state}
    fit_kwargs
        Further fixed arguments of ``fit_sae`` (e.g. ``n_epochs=20``, ``batch_size=256``).

    Returns
    -------
    Tidy DataFrame, one row per (setting, family): the grid's columns, ``fvu``, ``l0``,
    ``dead_fraction``, ``n_live``, ``family``, ``n_variables``, ``mean_best_r``,
    ``median_best_r``, ``frac_recovered``, ``features_per_variable``, ``redundancy``. Draw it with
    :func:`sclens.pl.sweep`.
    """
    from .. import tl

    check_adata(adata)
    if not hasattr(tl, "fit_sae"):  # pragma: no cover - during development only
        msg = "sl.tl.fit_sae is not available in this sclens build."
        raise ImportError(msg)
    settings = _settings(DEFAULT_GRID if grid is None else grid)
    spec = resolve_targets(adata, targets)
    emb = as_dense_float32(get_rep(adata, use_rep), name=f"embedding obsm[{use_rep!r}]")
    seed = resolve_seed(random_state)
    rows = subsample(adata.n_obs, max_cells, seed)
    targets_m = {fam: target_matrix(adata, where, rows) for fam, where in spec.items()}

    frames = []
    for setting in progress(settings, desc="sweep"):
        light = AnnData(obs=pd.DataFrame(index=adata.obs_names.copy()), obsm={"X_emb": emb})
        tl.fit_sae(light, use_rep="X_emb", random_state=seed, key_added="sae", **fit_kwargs, **setting)
        acts = light.obsm["X_sae"].tocsr()
        metrics = sae_run(light, "sae", need=("metrics",))["metrics"]
        live = live_features(acts)
        codes = as_dense_float32(acts[rows][:, live], name="SAE activations")
        table = summarize(per_variable_table(codes, targets_m, threshold, live).assign(method="sae"), threshold)
        for name, value in setting.items():
            table.insert(0, name, value)
        for name in ("fvu", "l0", "dead_fraction", "n_live"):
            table[name] = float(np.asarray(metrics[name]))
        logger.info("sweep %s: fvu %.3f, l0 %.1f", setting, table["fvu"].iloc[0], table["l0"].iloc[0])
        frames.append(table.drop(columns="method"))
    return pd.concat(frames, ignore_index=True)

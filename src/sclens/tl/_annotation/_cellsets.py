"""High / low cell sets per SAE feature (paper, sec. 5.3) as sparse membership matrices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..._features import check_live, live_features, resolve_features
from ..._utils import sae_activations

if TYPE_CHECKING:
    from anndata import AnnData

SKIP_COLUMNS = ["feature", "reason", "n_high", "n_low"]
#: fewest cells in the high or the low set: a single cell has no replicate, its difference cannot be
#: told from its own noise
MIN_CELLS = 2


@dataclass
class CellSets:
    """Membership of every kept feature's high and low cells.

    ``high`` and ``low`` are CSC boolean-valued float32 matrices (cells x kept features),
    ``features`` the kept feature numbers, ``skipped`` a DataFrame with one row per skipped feature.
    """

    high: sparse.csc_matrix
    low: sparse.csc_matrix
    features: np.ndarray
    skipped: pd.DataFrame


def annotated_features(adata: AnnData, *, key: str, features: Any) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Activations (cells x all features, CSC) and the features to annotate, ascending.

    :func:`sclens._features.resolve_features` (``None``: every live feature); explicitly named
    dead features raise, as they have no high cells.
    """
    acts = sae_activations(adata, key).tocsc()
    live = live_features(acts)
    feats = resolve_features(features, acts.shape[1], live=live)
    check_live(feats, live)
    return acts, np.sort(feats)


def resolve_within(adata: AnnData, within: Any) -> np.ndarray | None:
    """Boolean cell mask from ``{obs_column: value or list of values}`` or a mask; ``None`` for all cells."""
    if within is None:
        return None
    if isinstance(within, (np.ndarray, pd.Series, list)) and np.asarray(within).dtype == bool:
        mask = np.asarray(within, dtype=bool)
        if mask.shape != (adata.n_obs,):
            msg = f"cells as a boolean mask needs one value per cell ({adata.n_obs}), got shape {mask.shape}."
            raise ValueError(msg)
        return mask
    if not isinstance(within, dict) or not within:
        msg = f"cells must be a dict such as {{'cell_type': 'B cells'}} or a boolean mask, got {within!r}."
        raise TypeError(msg)
    return obs_mask(adata, within, check_values=True)


def obs_mask(
    adata: AnnData, selection: Mapping[str, Any], *, name: str = "cells", check_values: bool = False
) -> np.ndarray:
    """Boolean mask of the cells whose ``adata.obs[column]`` is one of the values given, for every column.

    ``selection``: ``{obs column: one value or a collection of values}`` (compared as strings); ``name``: the
    argument, for messages; ``check_values``: a value no cell has is an error (else it selects nothing).
    """
    mask = np.ones(adata.n_obs, dtype=bool)
    for col, values in selection.items():
        if col not in adata.obs.columns:
            msg = f"`adata.obs[{col!r}]` not found (used in {name}); available columns: {list(adata.obs.columns)}."
            raise KeyError(msg)
        # any collection of values (list, set, array, pandas Index / Categorical), or one value
        values = [values] if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else list(values)
        col_values = adata.obs[col].astype(str)
        present = set(col_values.unique()) if check_values else set()
        missing = [v for v in values if str(v) not in present] if check_values else []
        if missing:
            msg = f"{name}: {missing} not found in `adata.obs[{col!r}]`."
            raise ValueError(msg)
        mask &= col_values.isin([str(v) for v in values]).to_numpy()
    return mask


def cell_sets(
    acts: sparse.csc_matrix,
    features: np.ndarray,
    *,
    high_quantile: float,
    low_quantile: float | None,
    n_low: int,
    min_high: int,
    mask: np.ndarray | None,
    seed: int,
    strict: bool = False,
) -> CellSets:
    """Build the high / low sets of every feature (rules in :func:`annotate_features`).

    High: the cells at or above the ``high_quantile`` quantile (strictly above when ``strict``),
    extended to the ``min_high`` most active cells when fewer; only active cells qualify. Low: up to
    ``n_low`` cells of the pool (zero cells, or active cells at or below ``low_quantile``) outside the
    high set. A feature is skipped only when a set has fewer than :data:`MIN_CELLS` cells.
    """
    n_cells = acts.shape[0]
    n_sel = n_cells if mask is None else int(mask.sum())
    in_mask = np.ones(n_cells, dtype=bool) if mask is None else mask
    hi_idx, lo_idx, kept, skipped = [], [], [], []
    for f in features:
        start, end = acts.indptr[f], acts.indptr[f + 1]
        nz_cells, nz_vals = acts.indices[start:end], acts.data[start:end]
        sel = (nz_vals > 0) & in_mask[nz_cells]
        nz_cells, nz_vals = nz_cells[sel], nz_vals[sel]
        order = np.argsort(-nz_vals, kind="stable")  # most active first
        if low_quantile is None:  # quantile over all selected cells, zeros included (they are the low pool)
            thr = _quantile_with_zeros(nz_vals[order[::-1]], n_sel - nz_cells.size, high_quantile)
        else:
            thr = float(np.quantile(nz_vals, high_quantile)) if nz_cells.size else 0.0
        n_above = int((nz_vals > thr).sum() if strict else (nz_vals >= thr).sum())
        top = order[: max(n_above, min(min_high, nz_cells.size))]
        high = np.sort(nz_cells[top])
        if low_quantile is None:
            zero = in_mask.copy()
            zero[nz_cells] = False
            pool = np.flatnonzero(zero)
        else:
            rest = np.ones(nz_cells.size, dtype=bool)
            rest[top] = False
            thr_low = float(np.quantile(nz_vals, low_quantile)) if nz_cells.size else 0.0
            pool = np.sort(nz_cells[rest & (nz_vals <= thr_low)])
        rng = np.random.default_rng([seed, int(f)])
        low = np.sort(rng.choice(pool, size=n_low, replace=False)) if pool.size > n_low else pool
        reason = _skip_reason(high.size, low.size, n_active=nz_cells.size, low_quantile=low_quantile)
        if reason:
            skipped.append((int(f), reason, int(high.size), int(low.size)))
            continue
        hi_idx.append(high)
        lo_idx.append(low)
        kept.append(int(f))
    return CellSets(
        high=_membership(hi_idx, n_cells),
        low=_membership(lo_idx, n_cells),
        features=np.asarray(kept, dtype=int),
        skipped=pd.DataFrame(skipped, columns=SKIP_COLUMNS).astype(
            {"feature": int, "reason": str, "n_high": int, "n_low": int}
        ),
    )


def _quantile_with_zeros(v: np.ndarray, n_zero: int, q: float) -> float:
    """``np.quantile`` (linear) of the sorted positive ``v`` padded with ``n_zero`` zeros, without the padding."""
    n = n_zero + v.size
    if v.size == 0:
        return 0.0
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    at_lo, at_hi = (0.0 if i < n_zero else float(v[i - n_zero]) for i in (lo, min(lo + 1, n - 1)))
    return at_lo + (pos - lo) * (at_hi - at_lo)


def _skip_reason(n_high: int, n_low: int, *, n_active: int, low_quantile: float | None) -> str:
    """Why a feature cannot be tested (``""`` when it can): a set with fewer than ``MIN_CELLS`` cells."""
    if n_active == 0:
        return "never active in the selected cells"
    if n_high < MIN_CELLS:
        return f"active in {n_active} selected cell(s); a group needs at least {MIN_CELLS}"
    if n_low < MIN_CELLS:
        pool = "zero cells" if low_quantile is None else f"active cells at or below low_quantile={low_quantile}"
        return f"low set has {n_low} cell(s) ({pool}); a group needs at least {MIN_CELLS}"
    return ""


def check_cell_set_args(*, high_quantile: float, low_quantile: float | None, n_low: int, min_high: int) -> None:
    """Refuse quantiles outside (0, 1) and ``n_low`` or ``min_high`` below :data:`MIN_CELLS`."""
    for name, q in (("high_quantile", high_quantile), ("low_quantile", low_quantile)):
        if q is not None and not 0 < q < 1:
            msg = f"{name} must be in (0, 1), got {q!r}."
            raise ValueError(msg)
    if int(n_low) < MIN_CELLS or int(min_high) < MIN_CELLS:
        msg = f"n_low and min_high must be >= {MIN_CELLS}, got n_low={n_low!r}, min_high={min_high!r}."
        raise ValueError(msg)


def skip_message(skipped: pd.DataFrame, n_features: int, *, cells: Any, low_quantile: float | None) -> str:
    """``"k of n feature(s) cannot be tested: <reasons>; <advice>"``, the advice from the call's arguments."""
    kinds = skipped["reason"].str.split(";").str[0].str.replace(r"\d+", "N", regex=True).value_counts()
    text = f"{len(skipped)} of {n_features} feature(s) cannot be tested: " + ", ".join(
        f"{k} ({n})" for k, n in kinds.items()
    )
    advice = []
    if cells is not None:
        advice.append("select more cells with `cells=` (both sets are drawn from the selected cells)")
    if low_quantile is None and skipped["reason"].str.startswith("low set").any():
        advice.append("compare with weakly active cells instead of zero cells: `low_quantile=0.05`")
    return f"{text}; " + ("; ".join(advice) if advice else "no setting can test a feature that (almost) never varies")


def _membership(indices: list[np.ndarray], n_cells: int) -> sparse.csc_matrix:
    lengths = np.array([i.size for i in indices], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    data = np.ones(rows.size, dtype=np.float32)
    return sparse.csc_matrix((data, rows, indptr), shape=(n_cells, len(indices)))

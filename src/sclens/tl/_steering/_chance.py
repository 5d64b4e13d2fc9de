r"""Chance baselines of the steering tools: the same change applied to random SAE features.

A steering effect means little on its own: on PBMCs, setting as many *random* features to the
target's mean activations also brings every source cell closer to the target centroid. Each tool
therefore repeats its change on ``n_random`` sets of as many random live features (same rule, same
strength), and reports the observed effect next to that null with the empirical p-value
``(1 + #random draws at least as good) / (1 + n_random)``.

The dose-response curve scales each cell's code change by a strength :math:`s`,
:math:`z'(s) = \max(z + s\,(z' - z), 0)` (codes stay non-negative): 0 is no change, 1 the steering
asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def check_chance_args(n_random: Any, strengths: Any = STRENGTHS) -> tuple[int, np.ndarray]:
    """Return ``n_random`` and ``strengths`` checked (a non-negative integer; finite values >= 0)."""
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 0:
        msg = f"n_random must be a non-negative integer (0: no random baseline), got {n_random!r}."
        raise ValueError(msg)
    try:
        grid = np.asarray(strengths, dtype=float).ravel()
    except (TypeError, ValueError):
        grid = np.array([np.nan])
    if grid.size == 0 or not np.isfinite(grid).all() or (grid < 0).any():
        msg = (
            "strengths must be a non-empty sequence of finite numbers >= 0 (1 = the steering asked for), "
            f"got {strengths!r}."
        )
        raise ValueError(msg)
    return int(n_random), np.unique(grid)


def draw_sets(pool: np.ndarray, size: int, n_random: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_random`` sets of ``size`` features drawn without replacement from ``pool``."""
    if n_random and pool.size < size:
        msg = (
            f"n_random={n_random}: only {pool.size} other live feature(s) to draw random sets of {size} from; "
            "steer fewer features or pass n_random=0 (no random baseline)."
        )
        raise ValueError(msg)
    return [np.sort(rng.choice(pool, size, replace=False)) for _ in range(n_random)]


def empirical_pvalue(observed: float, null: np.ndarray, *, larger_is_better: bool) -> float:
    """``(1 + #null draws at least as good as observed) / (1 + #draws)``; NaN without draws."""
    null = np.asarray(null, dtype=float)
    if null.size == 0 or not np.isfinite(observed):
        return float("nan")
    as_good = null >= observed if larger_is_better else null <= observed
    return float((1 + int(as_good.sum())) / (1 + null.size))


def scaled_change(old: np.ndarray, new: np.ndarray, strength: float) -> np.ndarray:
    """Code change at ``strength`` (1: ``new - old``), codes kept >= 0."""
    return np.maximum(old + strength * (new - old), 0.0) - old


def baseline_table(draws: Sequence[np.ndarray], rows: Sequence[dict[str, float]]) -> pd.DataFrame:
    """One row per draw (``"chosen"``, ``"random_0"``, ...): the features (comma-separated) and the metrics."""
    index = ["chosen", *(f"random_{i}" for i in range(len(draws) - 1))]
    table = pd.DataFrame(list(rows), index=index)
    table.insert(0, "features", [",".join(str(int(f)) for f in d) for d in draws])
    return table


def summarise(table: pd.DataFrame, metric: str, *, larger_is_better: bool) -> dict[str, float]:
    """``metric`` of the chosen features, the median over random draws, and the empirical p-value."""
    observed = float(table[metric].iloc[0])
    null = table[metric].iloc[1:].to_numpy(dtype=float)
    null = null[np.isfinite(null)]
    return {
        metric: observed,
        f"{metric}_random": float(np.median(null)) if null.size else float("nan"),
        f"{metric}_pvalue": empirical_pvalue(observed, null, larger_is_better=larger_is_better),
    }


def dose_table(strengths: np.ndarray, curves: np.ndarray) -> pd.DataFrame:
    """Effect per strength: chosen (row 0 of ``curves``, draws x strengths) and the random draws' spread."""
    rand = curves[1:]
    has = rand.shape[0] > 0

    def q(p: float) -> np.ndarray:
        return np.quantile(rand, p, axis=0) if has else np.full(strengths.size, np.nan)

    return pd.DataFrame(
        {
            "strength": strengths,
            "chosen": curves[0],
            "random_median": q(0.5),
            "random_q05": q(0.05),
            "random_q95": q(0.95),
        },
        index=[str(i) for i in range(strengths.size)],
    )


def mean_fractions(expr: np.ndarray) -> np.ndarray:
    """Mean over cells of library-normalised expression (each cell's values divided by their sum)."""
    return (expr / np.maximum(expr.sum(axis=1, keepdims=True), 1e-12)).mean(axis=0)


def log2_ratio(expr_before: np.ndarray, expr_after: np.ndarray) -> np.ndarray:
    """Per gene: log2 ratio of the mean library-normalised expression, after / before (1e-5 added to each mean)."""
    return np.log2((mean_fractions(expr_after) + 1e-5) / (mean_fractions(expr_before) + 1e-5))


def expression_shift(expr_before: np.ndarray, expr_after: np.ndarray) -> float:
    """Mean over cells of the share of predicted expression that moves.

    Half the L1 distance of the library-normalised profiles (0: unchanged, 1: no gene in common).
    """

    def frac(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(e.sum(axis=1, keepdims=True), 1e-12)

    return float(0.5 * np.abs(frac(expr_after) - frac(expr_before)).sum(axis=1).mean())

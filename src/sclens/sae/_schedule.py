"""When to stop and how fast to learn: the default learning rate, its schedule and early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Learning rate of an SAE with 2**14 features; scaled by ``1 / sqrt(n_features / 2**14)``
#: (the rule of ``sparsify``, after Gao et al. 2024), capped at :data:`MAX_DEFAULT_LR`.
BASE_LR = 2e-4
MAX_DEFAULT_LR = 1e-2


def default_lr(n_features: int) -> float:
    """Adam learning rate for an SAE of ``n_features``: ``2e-4 / sqrt(n_features / 2**14)`` (at most 1e-2).

    256 features get 1.6e-3, 1,024 get 8e-4, 16,384 get 2e-4.
    """
    return min(BASE_LR / math.sqrt(max(n_features, 1) / 2**14), MAX_DEFAULT_LR)


@dataclass
class Stopping:
    """Train-until-converged rule (used when ``n_epochs`` is ``None``).

    Every ``eval_every`` optimizer steps the held-out loss is measured. A value that is not
    ``rel_tol`` below the best so far is a miss; after ``patience`` misses in a row the learning
    rate is multiplied by ``decay`` (at most ``n_decays`` times), and after the next ``patience``
    misses training stops (``"converged"``). It never stops before ``min_steps`` and always stops
    at ``max_steps`` (``"max_steps"``); the weights of the best evaluation are restored.
    """

    min_steps: int = 500
    max_steps: int = 20_000
    patience: int = 3
    eval_every: int = 100
    n_decays: int = 1
    decay: float = 0.3
    rel_tol: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("min_steps", "max_steps", "patience", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive integer, got {value!r}."
                raise ValueError(msg)
        if self.min_steps > self.max_steps:
            msg = f"min_steps ({self.min_steps}) must not exceed max_steps ({self.max_steps})."
            raise ValueError(msg)


class Monitor:
    """Book-keeping of :class:`Stopping`: best value and step, misses, learning-rate decays."""

    def __init__(self, rule: Stopping) -> None:
        self.rule = rule
        self.best = math.inf
        self.best_step = 0
        self.misses = 0
        self.decays = 0
        self.lr_scale = 1.0

    def update(self, step: int, value: float) -> tuple[bool, str | None]:
        """Record the held-out loss at ``step``; return (improved, stop reason or ``None``)."""
        rule = self.rule
        improved = value < self.best * (1 - rule.rel_tol) if math.isfinite(self.best) else math.isfinite(value)
        if improved:
            self.best, self.best_step, self.misses = value, step, 0
        else:
            self.misses += 1
        if step >= rule.max_steps:
            return improved, "max_steps"
        if self.misses >= rule.patience and step >= rule.min_steps:
            if self.decays >= rule.n_decays:
                return improved, "converged"
            self.decays += 1
            self.lr_scale *= rule.decay
            self.misses = 0
        return improved, None


def lr_factor(step: int, *, warmup: int, total: int | None) -> float:
    """Linear warm-up over ``warmup`` steps; with a known ``total``, linear decay to 0 over its last 20 %."""
    f = min(1.0, (step + 1) / max(warmup, 1))
    if total is not None:
        decay_start = int(0.8 * total)
        if step >= decay_start:
            f *= max(total - step, 1) / max(total - decay_start, 1)
    return f

"""``sl.pl.training``: training curves of an SAE run (pairs with :func:`sclens.tl.fit_sae`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._readers import sae_run
from ._utils import finish

_LABELS = {
    "loss": "loss",
    "fvu": "FVU",
    "l0": "L0 (active features per cell)",
    "dead_fraction": "dead fraction",
    "mse": "MSE",
    "sparsity_loss": "L1 penalty",
    "auxk_loss": "AuxK loss",
}


def _x_axis(run_metrics) -> tuple[np.ndarray, str]:
    """Optimizer steps when the run recorded them (``train_step``), else epochs 1, 2, ..."""
    if "train_step" in run_metrics:
        return np.asarray(run_metrics["train_step"], dtype=float), "optimizer step"
    n = max(len(np.atleast_1d(v)) for k, v in run_metrics.items() if k.startswith("train_"))
    return np.arange(1, n + 1, dtype=float), "epoch"


def _summary(run_metrics) -> str:
    """``'1,900 steps, converged; best held-out FVU 0.102'`` from the training summary, if stored."""
    if "n_steps" not in run_metrics:
        return ""
    text = f"{int(run_metrics['n_steps']):,} steps, {run_metrics['stop_reason']}"
    best = float(run_metrics.get("best_val_fvu", np.nan))
    return text + (f"; best held-out FVU {best:.3g}" if np.isfinite(best) else "")


@doc_params()
def training(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    metrics: Sequence[str] = ("loss", "fvu", "l0", "dead_fraction"),
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Plot training curves of an SAE fitted with :func:`sclens.tl.fit_sae`, against optimizer steps.

    Each metric gets its own panel; the ``fvu`` panel also shows the held-out FVU when present
    and marks the step whose weights were kept; the title gives the steps taken, why training
    stopped (``converged``, ``max_steps`` or ``n_epochs``) and the best held-out FVU.

    Parameters
    ----------
    {adata}
    {sae_key}
    metrics
        Curves to draw, from ``adata.uns[sae_key]['metrics']['train_<metric>']``: ``loss``, ``fvu``,
        ``l0``, ``dead_fraction``, ``mse``, ``sparsity_loss``, ``auxk_loss``.
    ax
        One matplotlib axes per metric (a single axes when one metric is drawn); new figure when ``None``.
    show
        Show the figure (``plt.show()``). ``None``: show only a figure the plot made itself when
        matplotlib is interactive. Ignored when ``return_fig`` is ``True``.
    save
        Path to write the figure to (any format matplotlib knows); ``None``: not saved.
    return_fig
        Return the :class:`~matplotlib.figure.Figure` instead of ``None``.

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    run_metrics = sae_run(adata, sae_key, need=("metrics",))["metrics"]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in _LABELS]
    if unknown or not metrics:
        msg = f"metrics must name at least one of {list(_LABELS)}; unknown: {unknown}."
        raise ValueError(msg)
    missing = [m for m in metrics if f"train_{m}" not in run_metrics]
    if missing:
        msg = (
            f"`adata.uns[{sae_key!r}]['metrics']` has no training curve for {missing}; curves are written by "
            "`sl.tl.fit_sae` (an SAE applied with `sl.tl.encode` has them only if its source had)."
        )
        raise KeyError(msg)
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.8), squeeze=False)
        axes = list(axes[0])
    else:
        axes = [ax] if not isinstance(ax, Sequence | np.ndarray) else list(np.ravel(ax))
        if len(axes) != len(metrics):
            msg = f"Pass one axes per metric: got {len(axes)} axes for {len(metrics)} metrics."
            raise ValueError(msg)
        fig = axes[0].figure
    x, xlabel = _x_axis(run_metrics)
    for a, m in zip(axes, metrics, strict=True):
        y = np.asarray(run_metrics[f"train_{m}"], dtype=float)
        a.plot(x[: len(y)], y, marker=".", label="train")
        if m == "fvu" and "val_fvu" in run_metrics and np.ndim(run_metrics["val_fvu"]) == 1:
            v = np.asarray(run_metrics["val_fvu"], dtype=float)
            a.plot(x[: len(v)], v, marker=".", label="held-out")
            if "best_step" in run_metrics and xlabel == "optimizer step":
                a.axvline(float(run_metrics["best_step"]), color="0.5", ls="--", lw=0.8, label="best (restored)")
            a.legend(frameon=False)
        a.set_xlabel(xlabel)
        a.set_ylabel(_LABELS[m])
        if m in ("loss", "mse") and np.all(y > 0):
            a.set_yscale("log")
    summary = _summary(run_metrics)
    if summary:
        fig.suptitle(summary, fontsize="medium")
    if ax is None:
        fig.tight_layout()
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

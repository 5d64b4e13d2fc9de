"""The one rule every plot follows to return, save, show or keep its figure (scanpy's ``savefig_or_show``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def new_or_given_ax(ax: Axes | None, *, figsize: tuple[float, float], **subplots_kw: Any) -> tuple[Figure, Axes]:
    """Return the figure and axes to draw into: the user's ``ax`` and its figure, or a new figure."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, **subplots_kw)
    return fig, ax


def panels(n: int, ax: Axes | None, *, ncols: int, panel_size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """``n`` panels: a new grid of ``ncols`` columns (extra cells hidden), or the user's single ``ax``."""
    if ax is not None:
        if n > 1:
            msg = f"`ax` holds one panel but {n} features were given; pass ax=None for a grid."
            raise ValueError(msg)
        return ax.figure, [ax]
    import matplotlib.pyplot as plt

    ncols = max(min(int(ncols), n), 1)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False, layout="constrained"
    )
    axes = list(axes.ravel())
    for extra in axes[n:]:
        extra.set_visible(False)
    return fig, axes[:n]


def finish(
    fig: Figure,
    *,
    ax: Axes | object | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Save, show or return a figure, the same way in every ``sl.pl`` function.

    * ``save`` writes the figure to that path (any format matplotlib knows) first.
    * ``return_fig=True`` returns the figure and never shows it.
    * ``show=None`` shows the figure only when the plot created it (``ax`` not given) and matplotlib
      is interactive; a plot drawn into the user's ``ax`` never shows or closes the figure, so the
      user can keep drawing the other panels. ``show=True`` always shows; ``show=False`` never does.
    """
    import matplotlib.pyplot as plt

    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if return_fig:
        return fig
    if show is None:
        show = ax is None and plt.isinteractive()
    if show:
        plt.show()
    return None


def feature_title(adata: object, sae_key: str, feature: int, *, width: int = 40, max_lines: int = 3) -> str:
    """Return ``"feature 12"`` and the run's readable label (``annotate_features``), wrapped to ``width``.

    The label is wrapped onto at most ``max_lines`` lines (the last one shortened with ``...``), so
    titles of neighbouring panels do not run into each other.
    """
    import textwrap

    import pandas as pd

    from .._readers import features_table

    table = features_table(adata, sae_key) if hasattr(adata, "uns") else None
    label = ""
    if isinstance(table, pd.DataFrame) and "label" in table.columns:
        label = str(table["label"].get(str(int(feature)), "") or "")
    if not label or label == "nan":
        return f"feature {int(feature)}"
    lines = textwrap.wrap(f"feature {int(feature)}: {label}", width, max_lines=max_lines, placeholder="...")
    return "\n".join(lines)

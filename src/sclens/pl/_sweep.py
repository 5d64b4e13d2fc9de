"""Plot of an SAE settings sweep (:func:`sclens.sim.sweep`)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from ._utils import finish, new_or_given_ax


@doc_params()
def sweep(
    df: pd.DataFrame,
    *,
    x: str = "l0",
    y: str = "mean_best_r",
    hue: str | None = None,
    family: str | None = "X''",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Scatter one metric of an SAE sweep against another, coloured by a setting.

    Parameters
    ----------
    df
        Table returned by :func:`sclens.sim.sweep` (or any tidy table with the named columns).
    x, y
        Columns drawn on the axes, e.g. ``"l0"``, ``"fvu"``, ``"dead_fraction"``,
        ``"mean_best_r"``, ``"frac_recovered"``.
    hue
        Column whose values get one colour each (``None``: one colour).
    family
        Keep only rows of this variable family when ``df`` has a ``family`` column (``None``: all).
    {plot}

    Returns
    -------
    The figure if ``return_fig`` is ``True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    if not isinstance(df, pd.DataFrame):
        msg = f"df must be the DataFrame returned by sl.sim.sweep, got {type(df).__name__}."
        raise TypeError(msg)
    if family is not None and "family" in df.columns:
        if family not in set(df["family"].astype(str)):
            msg = f"family {family!r} not in the table; available: {sorted(set(df['family'].astype(str)))}."
            raise ValueError(msg)
        df = df[df["family"].astype(str) == family]
    missing = [c for c in (x, y, hue) if c is not None and c not in df.columns]
    if missing:
        msg = f"Columns {missing} not in the table; available: {list(df.columns)}."
        raise KeyError(msg)
    fig, ax_ = new_or_given_ax(ax, figsize=(4.5, 3.5))
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True, observed=True))
    colors = plt.get_cmap("tab10")(np.arange(len(groups)) % 10)
    for (name, sub), color in zip(groups, colors, strict=True):
        label = None if name is None else f"{hue}={name[0] if isinstance(name, tuple) else name}"
        ax_.scatter(sub[x], sub[y], color=color, label=label, s=30, alpha=0.85, edgecolor="none")
    ax_.set_xlabel(x)
    ax_.set_ylabel(y if family is None else f"{y} ({family})")
    if hue is not None:
        ax_.legend(frameon=False, fontsize="small")
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

"""Features x label categories heatmap of :func:`sclens.tl.feature_alignment`, clustered."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._features import resolve_features
from .._readers import result
from ._utils import feature_title, finish, new_or_given_ax


def alignment_matrix(
    adata: AnnData, *, sae_key: str, alignment_key: str, groupby: str | Sequence[str] | None, metric: str
) -> pd.DataFrame:
    """Features x categories matrix of ``metric`` from the long alignment table."""
    if metric not in ("auroc", "f1", "precision", "recall"):
        msg = f"metric must be 'auroc', 'f1', 'precision' or 'recall', got {metric!r}."
        raise ValueError(msg)
    long = result(adata, "alignment", key=alignment_key, parent=sae_key)["table"]
    present = list(dict.fromkeys(long["groupby"].astype(str)))
    cols = present if groupby is None else ([groupby] if isinstance(groupby, str) else list(groupby))
    missing = [c for c in cols if c not in present]
    if missing:
        msg = f"groupby: columns {missing} were not scored; the alignment table has {present}."
        raise KeyError(msg)
    sel = long[long["groupby"].isin(cols)]
    label = (
        sel["category"].astype(str)
        if len(cols) == 1
        else sel["groupby"].astype(str) + ": " + sel["category"].astype(str)
    )
    wide = sel.assign(label=label.to_numpy()).pivot_table(index="feature", columns="label", values=metric, sort=False)
    return wide.fillna(0.0)


def _leaf_order(x: np.ndarray) -> np.ndarray:
    """Order of the rows of ``x`` by average-linkage clustering (Euclidean distance)."""
    if x.shape[0] < 3:
        return np.arange(x.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    return leaves_list(linkage(x, method="average", metric="euclidean"))


@doc_params()
def alignment(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    alignment_key: str = "alignment",
    groupby: str | Sequence[str] | None = None,
    features: int | Sequence[int] | None = None,
    metric: Literal["auroc", "f1", "precision", "recall"] = "auroc",
    n_features: int = 40,
    cmap: str = "viridis",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Heatmap of feature alignment to known labels: features (rows) x categories (columns), clustered.

    Rows and columns are ordered by average-linkage hierarchical clustering, so features aligned to
    the same category sit together.

    Parameters
    ----------
    {adata}
    {sae_key}
    alignment_key
        Name of the table written by :func:`sclens.tl.feature_alignment` (its ``key_added``).
    groupby
        Column(s) to draw; ``None``: every scored column (categories named ``column: category``).
    features
        Features to draw; ``None``: the ``n_features`` with the highest best score.
    metric
        Score drawn: ``"auroc"`` or the held-out ``"f1"``, ``"precision"`` or ``"recall"``.
    n_features
        Number of features drawn when ``features`` is ``None``.
    cmap
        Colour map.
    {plot}
    save
        Path to save the figure to (any format matplotlib writes).

    Returns
    -------
    The figure when ``return_fig=True``, else ``None``.
    """
    wide = alignment_matrix(adata, sae_key=sae_key, alignment_key=alignment_key, groupby=groupby, metric=metric)
    if features is None:
        wide = wide.loc[wide.max(axis=1).sort_values(ascending=False, kind="stable").index[: int(n_features)]]
    else:
        feats = resolve_features(features, None).tolist()
        missing = [f for f in feats if f not in wide.index]
        if missing:
            msg = f"features {missing} have no alignment scores (dead, or not in the table)."
            raise KeyError(msg)
        wide = wide.loc[feats]
    x = wide.to_numpy(dtype=float)
    rows, cols = _leaf_order(x), _leaf_order(x.T)
    x = x[np.ix_(rows, cols)]
    fig, ax = new_or_given_ax(ax, figsize=(1.5 + 0.35 * x.shape[1], 1.5 + 0.18 * x.shape[0]))
    vmin = 0.5 if metric == "auroc" else 0.0
    im = ax.imshow(x, aspect="auto", cmap=cmap, vmin=vmin, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(x.shape[1]), [str(c) for c in wide.columns[cols]], rotation=90)
    names = [feature_title(adata, sae_key, f, width=54, max_lines=1).removeprefix("feature ") for f in wide.index[rows]]
    ax.set_yticks(range(x.shape[0]), names, fontsize=7)
    ax.set_xlabel("category")
    ax.set_ylabel("feature")
    fig.colorbar(im, ax=ax, label=metric.upper() if metric == "auroc" else f"held-out {metric}")
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

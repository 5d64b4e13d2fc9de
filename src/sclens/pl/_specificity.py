"""Groups x features heatmap of mean SAE activations, local features ordered by group."""

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
from .._readers import features_table, result
from ._utils import finish, new_or_given_ax


def specificity_matrix(adata: AnnData, sae_key: str, specificity_key: str, kinds: Sequence[str]) -> pd.DataFrame:
    """Return groups x features mean activations of the chosen kinds, features ordered by group then effect."""
    stored = result(adata, "specificity", key=specificity_key, parent=sae_key)
    means: pd.DataFrame = stored["group_means"].T  # stored groups x features
    feats = features_table(adata, sae_key, required=True)
    groups = list(means.columns)
    sel = feats[feats["kind"].isin(list(kinds))]
    if sel.empty:
        msg = f"kinds: no feature of kind {list(kinds)}; counts: {feats['kind'].value_counts().to_dict()}."
        raise ValueError(msg)
    rank = {g: i for i, g in enumerate(groups)}
    order = pd.DataFrame(
        {
            "group": sel["top_group"].map(rank).fillna(len(groups)).to_numpy(),
            "local": (sel["kind"] != "local").to_numpy(),
            "effect": -sel["effect"].to_numpy(dtype=float),
        },
        index=sel.index,
    ).sort_values(["local", "group", "effect"], kind="stable")
    return means.loc[order.index].T


@doc_params()
def specificity(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    specificity_key: str = "specificity",
    kinds: Sequence[Literal["local", "global", "dead"]] = ("local", "global"),
    standard_scale: bool = True,
    cmap: str = "viridis",
    max_labels: int = 40,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Heatmap of mean feature activation per group (rows) and feature (columns).

    Local features come first, ordered by the group they are local to (then by effect), followed
    by the other kinds requested; a block diagonal shows group-specific features (paper fig. S15).

    Parameters
    ----------
    {adata}
    {sae_key}
    specificity_key
        Key of the result in ``adata.uns[sae_key]`` (the ``key_added`` of :func:`sclens.tl.feature_specificity`).
    kinds
        Feature kinds shown (``"local"``, ``"global"``, ``"dead"``).
    standard_scale
        Divide each feature's column by its maximum so every feature spans 0-1.
    cmap
        Matplotlib colormap.
    max_labels
        Feature ids are written on the x axis when there are at most this many features.
    {plot}

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    mat = specificity_matrix(adata, sae_key, specificity_key, kinds)
    values = mat.to_numpy(dtype=float)
    if standard_scale:
        top = values.max(axis=0, keepdims=True)
        values = np.divide(values, top, out=np.zeros_like(values), where=top > 0)
    figsize = (min(2 + 0.15 * values.shape[1], 12), 1.2 + 0.35 * values.shape[0])
    fig, ax_ = new_or_given_ax(ax, figsize=figsize, layout="constrained")
    im = ax_.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax_.set_yticks(range(len(mat.index)), labels=[str(g) for g in mat.index])
    if values.shape[1] <= max_labels:
        ax_.set_xticks(range(values.shape[1]), labels=list(mat.columns), rotation=90, fontsize=6)
    else:
        ax_.set_xticks([])
    kind = features_table(adata, sae_key, required=True)["kind"].reindex(mat.columns).to_numpy()
    n_local = int((kind == "local").sum())
    if 0 < n_local < values.shape[1]:
        ax_.axvline(n_local - 0.5, color="white", linewidth=1.5)
    ax_.set_xlabel("SAE feature")
    fig.colorbar(im, ax=ax_, label="scaled mean activation" if standard_scale else "mean activation")
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

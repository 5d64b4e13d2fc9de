"""Groups x features heatmap of mean SAE activations, local features ordered by group."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._utils import check_adata
from ._activation import finish


def specificity_matrix(adata: AnnData, key: str, kinds: Sequence[str]) -> pd.DataFrame:
    """Groups x features mean activations of the chosen kinds, features ordered by group then effect."""
    check_adata(adata)
    run = adata.uns.get(key)
    if not isinstance(run, dict) or "group_means" not in run:
        msg = (
            f"`adata.uns[{key!r}]['group_means']` not found; run `sl.tl.feature_specificity(adata, groupby=...)` first."
        )
        raise KeyError(msg)
    means: pd.DataFrame = run["group_means"]
    feats = run["features"]
    groups = list(means.columns)
    sel = feats[feats["kind"].isin(list(kinds))]
    if sel.empty:
        msg = f"No feature of kind {list(kinds)}; counts: {feats['kind'].value_counts().to_dict()}."
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
    key: str = "sae",
    kinds: Sequence[str] = ("local", "global"),
    standard_scale: bool = True,
    cmap: str = "viridis",
    max_labels: int = 40,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Heatmap of mean feature activation per group (rows) and feature (columns).

    Local features come first, ordered by the group they are local to (then by effect), followed
    by the other kinds requested; a block diagonal shows group-specific features (paper fig. S15).

    Parameters
    ----------
    {adata}
    {key}
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
    import matplotlib.pyplot as plt

    mat = specificity_matrix(adata, key, kinds)
    values = mat.to_numpy(dtype=float)
    if standard_scale:
        top = values.max(axis=0, keepdims=True)
        values = np.divide(values, top, out=np.zeros_like(values), where=top > 0)
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(min(2 + 0.15 * values.shape[1], 12), 1.2 + 0.35 * values.shape[0]), layout="constrained"
        )
    else:
        fig = ax.figure
    im = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_yticks(range(len(mat.index)), labels=[str(g) for g in mat.index])
    if values.shape[1] <= max_labels:
        ax.set_xticks(range(values.shape[1]), labels=list(mat.columns), rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    kind = adata.uns[key]["features"]["kind"].reindex(mat.columns).to_numpy()
    n_local = int((kind == "local").sum())
    if 0 < n_local < values.shape[1]:
        ax.axvline(n_local - 0.5, color="white", linewidth=1.5)
    ax.set_xlabel("SAE feature")
    fig.colorbar(im, ax=ax, label="scaled mean activation" if standard_scale else "mean activation")
    return finish(fig, show=show, return_fig=return_fig)

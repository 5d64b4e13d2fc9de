"""Normal vs perturbed embeddings of a steering experiment, on their PCA (paper fig. 2B)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._utils import check_adata, resolve_seed
from ._activation import finish


def steering_coords(adata: AnnData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA (2 components) of the stacked embeddings; returns coords, normal rows, perturbed rows."""
    check_adata(adata)
    info = adata.uns.get("steer")
    if not isinstance(info, dict) or "condition" not in adata.obs.columns:
        msg = "This AnnData is not the output of `sl.tl.steer` (needs `uns['steer']` and `obs['condition']`)."
        raise KeyError(msg)
    emb = np.asarray(adata.obsm[info["use_rep"]], dtype=np.float64)
    cond = adata.obs["condition"].astype(str).to_numpy()
    normal, perturbed = np.flatnonzero(cond == "normal"), np.flatnonzero(cond == "perturbed")
    if emb.shape[1] > 2:
        centred = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        coords = centred @ (vt[:2] * signs[:2, None]).T
    else:
        coords = emb
    return coords, normal, perturbed


@doc_params()
def steering(
    adata: AnnData,
    *,
    max_pairs: int = 200,
    colors: tuple[str, str] = ("black", "tab:blue"),
    size: float = 12.0,
    random_state: int = 0,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """PCA of normal (black) and perturbed (blue) embeddings with a line joining each pair.

    Parameters
    ----------
    adata
        Output of :func:`sclens.tl.steer` (two rows per steered cell).
    max_pairs
        At most this many cell pairs are joined by lines (a random subset); all points are drawn.
    colors
        Colours of the normal and perturbed points.
    size
        Marker size.
    {random_state}
    {plot}

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    coords, normal, perturbed = steering_coords(adata)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4), layout="constrained")
    else:
        fig = ax.figure
    rng = np.random.default_rng(resolve_seed(random_state))
    pairs = np.arange(normal.size)
    if pairs.size > max_pairs:
        pairs = np.sort(rng.choice(pairs, size=max_pairs, replace=False))
    segments = np.stack([coords[normal[pairs]], coords[perturbed[pairs]]], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.5, zorder=1))
    ax.scatter(*coords[normal].T, s=size, c=colors[0], label="normal", linewidths=0, zorder=2)
    ax.scatter(*coords[perturbed].T, s=size, c=colors[1], label="perturbed", linewidths=0, zorder=3)
    info = adata.uns["steer"]
    ax.set_title(f"feature {info['feature']} steered to {info['target']:.3g}")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(frameon=False, loc="best")
    return finish(fig, show=show, return_fig=return_fig)

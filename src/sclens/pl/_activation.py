"""Cells on an embedding, coloured and size-scaled by SAE feature activations (paper fig. 2A/C)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._utils import check_adata, sae_activations
from ._utils import feature_title


def finish(fig: Figure, *, show: bool | None, return_fig: bool) -> Figure | None:
    """Return, show or keep the figure, per the ``show`` / ``return_fig`` convention."""
    import matplotlib.pyplot as plt

    if return_fig:
        return fig
    if show is None or show:
        plt.show()
    return None


def basis_coords(adata: AnnData, basis: str) -> np.ndarray:
    """First two columns of ``obsm[f"X_{basis}"]`` (or ``obsm[basis]``)."""
    for k in (f"X_{basis}", basis):
        if k in adata.obsm:
            x = adata.obsm[k]
            x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
            if x.shape[1] < 2:
                msg = f"`adata.obsm[{k!r}]` has {x.shape[1]} column(s); a scatter plot needs 2."
                raise ValueError(msg)
            return np.asarray(x[:, :2], dtype=np.float64)
    msg = (
        f"Basis {basis!r} not found: neither `adata.obsm['X_{basis}']` nor `adata.obsm[{basis!r}]` exists; "
        f"available: {list(adata.obsm.keys())}. Run e.g. `sc.tl.umap(adata)` or `sc.pp.pca(adata)` first."
    )
    raise KeyError(msg)


@doc_params()
def feature_activation(
    adata: AnnData,
    *,
    features: int | Sequence[int],
    basis: str = "umap",
    key: str = "sae",
    ncols: int = 3,
    cmap: str = "Reds",
    size: tuple[float, float] = (2.0, 30.0),
    panel_size: float = 3.0,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Cells on an embedding coloured and size-scaled by the activation of SAE features.

    Inactive cells are drawn first, small and light; active cells on top in order of activation.

    Parameters
    ----------
    {adata}
    features
        Feature index or list of indices; one panel each.
    basis
        Embedding in ``adata.obsm`` (``"umap"`` reads ``obsm['X_umap']``; ``"pca"``, ``"X_scVI"``...).
    {key}
    ncols
        Panels per row.
    cmap
        Matplotlib colormap of activations.
    size
        Marker sizes of the smallest and the largest activation.
    panel_size
        Width and height of each panel, in inches.
    {plot}

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    check_adata(adata)
    act = sae_activations(adata, key)
    feats = [features] if isinstance(features, (int, np.integer)) else list(features)
    if not feats:
        msg = "features is empty; pass at least one feature index."
        raise ValueError(msg)
    for f in feats:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < act.shape[1]:
            msg = f"feature {f!r} is out of range: this SAE has {act.shape[1]} features (0..{act.shape[1] - 1})."
            raise ValueError(msg)
    coords = basis_coords(adata, basis)
    if ax is not None and len(feats) > 1:
        msg = f"`ax` holds one panel but {len(feats)} features were given; pass ax=None for a grid."
        raise ValueError(msg)
    if ax is None:
        ncols_ = min(ncols, len(feats))
        nrows = int(np.ceil(len(feats) / ncols_))
        fig, axes = plt.subplots(
            nrows, ncols_, figsize=(panel_size * ncols_, panel_size * nrows), squeeze=False, layout="constrained"
        )
        axes = axes.ravel()
        for extra in axes[len(feats) :]:
            extra.set_visible(False)
    else:
        fig, axes = ax.figure, [ax]
    for f, ax_ in zip(feats, axes, strict=False):
        a = np.asarray(act[:, f].toarray()).ravel()
        amax = a.max() if a.max() > 0 else 1.0
        order = np.argsort(a, kind="stable")
        sizes = size[0] + (size[1] - size[0]) * a[order] / amax
        sc = ax_.scatter(
            coords[order, 0],
            coords[order, 1],
            c=a[order],
            s=sizes,
            cmap=cmap,
            vmin=0,
            vmax=amax,
            linewidths=0,
        )
        ax_.set_title(feature_title(adata, key, f))
        ax_.set_xticks([])
        ax_.set_yticks([])
        ax_.set_xlabel(f"{basis}1")
        ax_.set_ylabel(f"{basis}2")
        fig.colorbar(sc, ax=ax_, shrink=0.7, label="activation")
    return finish(fig, show=show, return_fig=return_fig)

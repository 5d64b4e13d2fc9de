"""Cells on an embedding, coloured and size-scaled by SAE feature activations (paper fig. 2A/C)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._utils import as_feature_list, check_adata, sae_activations
from ._utils import feature_title, finish, panels


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
    sae_key: str = "sae",
    ncols: int = 3,
    cmap: str = "Reds",
    size: float = 30.0,
    panel_size: float = 3.0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Cells on an embedding coloured and size-scaled by the activation of SAE features.

    Inactive cells are drawn first, small and light; active cells on top in order of activation.

    Parameters
    ----------
    {adata}
    {features} One panel each.
    basis
        Embedding in ``adata.obsm`` (``"umap"`` reads ``obsm['X_umap']``; ``"pca"``, ``"X_scVI"``...).
    {sae_key}
    ncols
        Panels per row.
    cmap
        Matplotlib colormap of activations.
    size
        Point size of the most active cell; the others scale linearly with their activation down to
        ``size / 15`` for inactive cells.
    panel_size
        Width and height of each panel, in inches.
    {plot}

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    check_adata(adata)
    act = sae_activations(adata, sae_key)
    feats = as_feature_list(features, act.shape[1])
    coords = basis_coords(adata, basis)
    smallest, largest = float(size) / 15, float(size)
    fig, axes = panels(len(feats), ax, ncols=ncols, panel_size=(panel_size, panel_size))
    for f, ax_ in zip(feats, axes, strict=False):
        a = np.asarray(act[:, f].toarray()).ravel()
        amax = a.max() if a.max() > 0 else 1.0
        order = np.argsort(a, kind="stable")
        sizes = smallest + (largest - smallest) * a[order] / amax
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
        ax_.set_title(feature_title(adata, sae_key, f, width=32))
        ax_.set_xticks([])
        ax_.set_yticks([])
        ax_.set_xlabel(f"{basis}1")
        ax_.set_ylabel(f"{basis}2")
        fig.colorbar(sc, ax=ax_, shrink=0.7, label="activation")
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

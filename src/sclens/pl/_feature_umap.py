"""UMAP of the SAE feature x GO-term space, by first-level category or probed by a concept (paper fig. 3)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from ..tl._feature_space import stored_space
from ._activation import finish


def concept_mask(adata: AnnData, key: str, concept: str) -> np.ndarray:
    """Boolean per feature of the feature space: has a term whose name contains ``concept``."""
    space = _space(adata, key)
    names = np.char.lower(np.asarray(space["term_name"]).astype(str))
    hit_terms = np.char.find(names, concept.lower()) >= 0
    mat = space["matrix"]
    return np.asarray(mat[:, hit_terms].sum(axis=1)).ravel() > 0


def _space(adata: AnnData, key: str) -> dict:
    return stored_space(adata, key)


@doc_params()
def feature_umap(
    adata: AnnData,
    *,
    key: str = "sae_go",
    concept: str | None = None,
    size: float = 10.0,
    palette: str = "tab20",
    legend: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """SAE features on the UMAP of their GO terms.

    Without ``concept`` the features are coloured by the most common first-level GO category of
    their terms; with ``concept`` the features having at least one term whose name contains the
    word (case-insensitive) are dark and the others light.

    Parameters
    ----------
    {adata}
    key
        Key of the annotation holding ``adata.uns[key]['feature_space']``
        (from :func:`sclens.tl.feature_space`).
    concept
        Word probed in the term names, e.g. ``"interferon"``.
    size
        Marker size.
    palette
        Matplotlib qualitative colormap for the categories.
    legend
        Draw the category legend (ignored with ``concept``).
    {plot}

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    space = _space(adata, key)
    coords = np.asarray(space["umap"], dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4) if concept is None and legend else (4, 4), layout="constrained")
    else:
        fig = ax.figure
    if concept is not None:
        if not isinstance(concept, str) or not concept:
            msg = f"concept must be a non-empty string, got {concept!r}."
            raise ValueError(msg)
        hit = concept_mask(adata, key, concept)
        ax.scatter(*coords[~hit].T, s=size, c="0.85", linewidths=0)
        ax.scatter(*coords[hit].T, s=size, c="0.1", linewidths=0)
        ax.set_title(f"{concept} ({int(hit.sum())} features)")
    else:
        cats = np.asarray(space["category"]).astype(str)
        levels = sorted(set(cats) - {"unassigned"}) + (["unassigned"] if "unassigned" in cats else [])
        cmap = plt.get_cmap(palette)
        for i, level in enumerate(levels):
            color = "0.8" if level == "unassigned" else cmap(i % cmap.N)
            sel = cats == level
            ax.scatter(*coords[sel].T, s=size, color=color, label=level, linewidths=0)
        if legend:
            ax.legend(frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
    ax.set_xlabel("UMAP1")
    ax.set_ylabel("UMAP2")
    ax.set_xticks([])
    ax.set_yticks([])
    return finish(fig, show=show, return_fig=return_fig)

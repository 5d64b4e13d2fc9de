"""UMAP of the SAE feature x GO-term space, by first-level category or probed by a concept (paper fig. 3)."""

from __future__ import annotations

import os

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._readers import result
from ._utils import finish, new_or_given_ax


def concept_mask(space: dict, concept: str) -> np.ndarray:
    """Boolean per feature of the feature ``space``: has a term whose name contains ``concept``."""
    names = np.char.lower(np.asarray(space["term_name"]).astype(str))
    hit_terms = np.char.find(names, concept.lower()) >= 0
    mat = space["matrix"]
    return np.asarray(mat[:, hit_terms].sum(axis=1)).ravel() > 0


@doc_params()
def feature_umap(
    adata: AnnData,
    *,
    annotation_key: str = "sae_go",
    space_key: str = "feature_space",
    concept: str | None = None,
    size: float = 10.0,
    palette: str = "tab20",
    legend: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """SAE features on the UMAP of their GO terms.

    Without ``concept`` the features are coloured by the most common first-level GO category of
    their terms (the title counts the categories, the legend names them); with ``concept`` the
    features having at least one term whose name contains the word (case-insensitive) are dark and
    the others light.

    Parameters
    ----------
    {adata}
    {annotation_key}
    {space_key}
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

    space = result(adata, "feature_space", key=space_key, parent=annotation_key)
    coords = np.asarray(space["umap"], dtype=float)
    if concept is not None and (not isinstance(concept, str) or not concept):
        msg = f"concept must be a non-empty string, got {concept!r}."
        raise ValueError(msg)
    figsize = (5, 4) if concept is None and legend else (4, 4)
    fig, ax_ = new_or_given_ax(ax, figsize=figsize, layout="constrained")
    if concept is not None:
        hit = concept_mask(space, concept)
        ax_.scatter(*coords[~hit].T, s=size, c="0.85", linewidths=0)
        ax_.scatter(*coords[hit].T, s=size, c="0.1", linewidths=0)
        ax_.set_title(f"{concept} ({int(hit.sum())} features)")
    else:
        cats = np.asarray(space["category"]).astype(str)
        levels = sorted(set(cats) - {"unassigned"}) + (["unassigned"] if "unassigned" in cats else [])
        cmap = plt.get_cmap(palette)
        for i, level in enumerate(levels):
            color = "0.8" if level == "unassigned" else cmap(i % cmap.N)
            sel = cats == level
            ax_.scatter(*coords[sel].T, s=size, color=color, label=level, linewidths=0)
        ax_.set_title(f"first-level GO category ({len(levels)})")
        if legend:
            ax_.legend(frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
    ax_.set_xlabel("UMAP1")
    ax_.set_ylabel("UMAP2")
    ax_.set_xticks([])
    ax_.set_yticks([])
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

"""Dot plot of one feature's top enriched terms (pairs with ``sl.tl.annotate_features``)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from ..get._results import feature_terms
from ._utils import feature_title


@doc_params()
def enrichment(
    adata: AnnData,
    *,
    feature: int,
    key: str = "sae_go",
    n_terms: int = 10,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Dot plot of a feature's top terms: x = -log10 p-value, size = genes in overlap, colour = padj.

    Parameters
    ----------
    {adata}
    feature
        Feature number.
    key
        Key of :func:`sclens.tl.annotate_features` results.
    n_terms
        Number of terms shown (best first).
    {plot}

    Returns
    -------
    The figure when ``return_fig=True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    terms = feature_terms(adata, feature=feature, key=key).head(int(n_terms))
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(terms), 2) + 1.2))
    else:
        fig = ax.figure
    if len(terms) == 0:
        ax.text(0.5, 0.5, f"feature {feature}: no term kept", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        p = terms["pvalue"].to_numpy(float)
        p = np.where(np.isnan(p), terms["padj"].to_numpy(float), p)
        x = -np.log10(np.maximum(p, 1e-300))
        y = np.arange(len(terms))[::-1]
        sc = ax.scatter(
            x, y, s=20 + 15 * terms["n_overlap"].to_numpy(float), c=-np.log10(np.maximum(terms["padj"], 1e-300)),
            cmap="viridis", edgecolors="k", linewidths=0.3,
        )  # fmt: skip
        labels = [f"{n} ({t})" if n != t else t for t, n in zip(terms.index, terms["name"], strict=True)]
        ax.set_yticks(y, labels)
        ax.set_xlabel("-log10 p-value")
        sae_key = str(adata.uns[key].get("params", {}).get("key", "sae"))
        ax.set_title(feature_title(adata, sae_key, feature))
        fig.colorbar(sc, ax=ax, label="-log10 padj")
    if return_fig:
        return fig
    if show or (show is None and plt.isinteractive()):
        plt.show()
    return None

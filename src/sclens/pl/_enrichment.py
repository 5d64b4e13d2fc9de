"""Dot plot of features' top enriched terms (pairs with ``sl.tl.annotate_features``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._features import resolve_features
from .._readers import annotation, annotation_results, has_themes
from ..get import feature_terms
from ._utils import feature_title, finish, panels


@doc_params()
def enrichment(
    adata: AnnData,
    *,
    features: int | Sequence[int],
    annotation_key: str = "sae_go",
    n_terms: int = 10,
    themes: bool = True,
    ncols: int = 2,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Dot plot of a feature's top terms: x = -log10 of the p-value the terms were kept on, size = genes in overlap.

    By default one dot per term theme (:func:`sclens.get.feature_terms` with ``themes=True``): the
    first ``n_terms`` themes (in the order of their best term), each drawn as its most specific term
    at that term's own p-value, labelled with the number of similar kept terms it stands for, so that
    ten dots show ten themes rather than one theme said ten ways. Dots are sorted by the p-value drawn.

    The x axis is the BH-adjusted p-value within the feature (the default rule, ``padj < alpha``;
    a dashed line marks ``alpha``), or the raw p-value for ``flavor="scfeaturelens"``, whose rule it
    is; the colour is always ``-log10 padj``.

    Parameters
    ----------
    {adata}
    {features} One panel each.
    {annotation_key}
    n_terms
        Number of terms (themes) shown per feature (best first).
    themes
        ``True``: one representative term per theme (every kept term when the results have no term
        clusters); ``False``: every kept term by p-value.
    ncols
        Panels per row when several features are drawn.
    {plot}

    Returns
    -------
    The figure when ``return_fig=True``, else ``None``.
    """
    feats = resolve_features(features, None).tolist()
    themes = themes and has_themes(annotation_results(adata, annotation_key, None))  # older results: every term
    tables = [
        feature_terms(adata, features=f, annotation_key=annotation_key, themes=themes).head(int(n_terms)) for f in feats
    ]
    height = 0.45 * max(max(len(t) for t in tables), 2) + 1.4
    fig, axes = panels(len(feats), ax, ncols=ncols, panel_size=(7.5, height))
    params = annotation(adata, annotation_key)["params"]
    sae_key = str(params.get("sae_key", "sae"))
    raw = params.get("flavor") == "scfeaturelens"
    alpha = None if raw or "alpha" not in params else float(params["alpha"])
    for f, terms, ax_ in zip(feats, tables, axes, strict=True):
        _draw(fig, ax_, f, terms, title=feature_title(adata, sae_key, f), raw=raw, alpha=alpha)
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)


SIZE_BASE, SIZE_PER_GENE = 20.0, 15.0  # dot area = SIZE_BASE + SIZE_PER_GENE * genes in overlap
LABEL_WIDTH = 38  # characters per line of a term label (at most two lines)


def term_label(term: str, name: str, similar: int = 0) -> str:
    """``name (term)`` wrapped to two lines of :data:`LABEL_WIDTH` characters, shortened with ``...``.

    ``similar``: other kept terms of its theme, shown as ``[+3]`` before the id.
    """
    import textwrap

    more = f" [+{similar}]" if similar else ""
    text = f"{name}{more} ({term})" if name != term else f"{term}{more}"
    return "\n".join(textwrap.wrap(text, LABEL_WIDTH, max_lines=2, placeholder="..."))


def _draw(
    fig: Figure, ax: Axes, feature: int, terms: pd.DataFrame, *, title: str, raw: bool, alpha: float | None
) -> None:
    if len(terms) == 0:
        ax.text(0.5, 0.5, f"feature {feature}: no term kept", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    padj = terms["padj"].to_numpy(float)
    p = np.where(np.isnan(terms["pvalue"].to_numpy(float)), padj, terms["pvalue"].to_numpy(float)) if raw else padj
    order = np.argsort(p, kind="stable")  # the themes chosen by their best term, drawn by their own p-value
    terms, padj, p = terms.iloc[order], padj[order], p[order]
    x = -np.log10(np.maximum(p, 1e-300))
    y = np.arange(len(terms))[::-1]
    overlap = terms["n_overlap"].to_numpy(float)
    sc = ax.scatter(
        x, y, s=SIZE_BASE + SIZE_PER_GENE * overlap, c=-np.log10(np.maximum(terms["padj"], 1e-300)),
        cmap="viridis", edgecolors="k", linewidths=0.3, clip_on=False,
    )  # fmt: skip
    similar = terms["n_theme_terms"].to_numpy() - 1 if "n_theme_terms" in terms else np.zeros(len(terms), dtype=int)
    labels = [term_label(t, n, int(k)) for t, n, k in zip(terms.index, terms["name"], similar, strict=True)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(terms) - 0.3)
    ax.set_xlim(0, x.max() * 1.15 + 0.3)  # room for the largest dot at the right
    ax.set_xlabel("-log10 p-value" if raw else "-log10 padj (BH within the feature)")
    if alpha is not None:
        ax.axvline(-np.log10(alpha), color="0.5", linestyle="--", linewidth=0.8)
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label="-log10 padj", shrink=0.8)
    sizes = np.unique(np.quantile(overlap, [0, 0.5, 1]).round().astype(int))
    handles = [
        ax.scatter([], [], s=SIZE_BASE + SIZE_PER_GENE * n, c="0.6", edgecolors="k", linewidths=0.3) for n in sizes
    ]
    ax.legend(handles, [str(n) for n in sizes], title="genes in overlap", loc="lower right", ncols=len(sizes),
              fontsize=8, title_fontsize=8, framealpha=0.9, borderaxespad=0.3)  # fmt: skip

"""sl.pl.enrichment draws one dot per kept term."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from biology_fixtures import toy_sae

import sclens as sl


def test_enrichment_plot():
    ad = toy_sae(n_cells=800, n_genes=300, random_state=0)
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[2, 3], alpha=0.5)  # fmt: skip
    n = len(sl.get.feature_terms(ad, features=2))
    fig = sl.pl.enrichment(ad, features=2, n_terms=3, return_fig=True)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == min(3, n) and labels[0] == "program_02"
    assert len(ax.collections[0].get_offsets()) == min(3, n)
    # x: the adjusted p-value the terms were kept on, with the threshold drawn
    terms = sl.get.feature_terms(ad, features=2).head(3)
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], -np.log10(terms["padj"].to_numpy()))
    assert ax.get_xlabel() == "-log10 padj (BH within the feature)"
    assert ax.lines[0].get_xdata()[0] == -np.log10(0.5)
    _, ax2 = plt.subplots()
    assert sl.pl.enrichment(ad, features=2, ax=ax2, show=False) is None
    two = sl.pl.enrichment(ad, features=[2, 3], n_terms=3, return_fig=True)  # one panel per feature
    titles = [a.get_title() for a in two.axes if a.get_visible() and a.get_title()]
    assert [t.split(":")[0] for t in titles] == ["feature 2", "feature 3"]
    plt.close("all")


def test_enrichment_long_names_readable():
    """Long GO names wrap to two lines, the largest dot stays inside the axes, a legend gives dot sizes."""
    import numpy as np

    from sclens.pl._enrichment import LABEL_WIDTH, SIZE_BASE, SIZE_PER_GENE

    ad = toy_sae(n_cells=800, n_genes=300, random_state=0)
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[2], alpha=0.5)  # fmt: skip
    res = ad.uns["sae_go"]["results"]
    res.loc[res.index[0], "name"] = (
        "positive regulation of transcription by RNA polymerase II in response to stress " * 2
    )
    fig = sl.pl.enrichment(ad, features=2, n_terms=5, return_fig=True)
    ax = fig.axes[0]
    label = ax.get_yticklabels()[0].get_text()
    lines = label.split("\n")
    assert len(lines) == 2
    assert max(len(line) for line in lines) <= LABEL_WIDTH
    assert lines[1].endswith("...")
    fig.canvas.draw()
    dots = ax.collections[0]
    x_max = dots.get_offsets()[:, 0].max()
    radius_px = np.sqrt(dots.get_sizes().max()) / 2 * fig.dpi / 72
    right_px = ax.transData.transform((x_max, 0))[0] + radius_px
    assert right_px < ax.get_window_extent().x1  # not clipped at the right edge
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "genes in overlap"
    overlap = sl.get.feature_terms(ad, features=2).head(5)["n_overlap"]
    sizes = [int(t.get_text()) for t in legend.get_texts()]
    assert sizes[0] == overlap.min()
    assert sizes[-1] == overlap.max()
    handle_sizes = [h.get_sizes()[0] for h in legend.legend_handles]
    np.testing.assert_allclose(handle_sizes, [SIZE_BASE + SIZE_PER_GENE * n for n in sizes])
    plt.close("all")


def test_enrichment_shows_themes():
    """Default: one dot per term theme, its representative, labelled with the similar terms it stands for."""
    import pandas as pd

    ad = toy_sae(n_cells=800, n_genes=300, random_state=0)
    gs = ad.uns["toy"]["gene_sets"]
    genes = gs.loc[gs["source"] == "program_02", "target"].tolist()
    nested = pd.DataFrame({"source": ["program_02_core"] * 8, "target": genes[:8]})
    sl.tl.annotate_features(ad, gene_sets=pd.concat([gs, nested], ignore_index=True), layer="counts", min_size=3,
                            high_quantile=0.98, features=[2], alpha=0.5)  # fmt: skip
    themes = sl.get.feature_terms(ad, features=2, themes=True)
    labels = [t.get_text() for t in sl.pl.enrichment(ad, features=2, return_fig=True).axes[0].get_yticklabels()]
    assert len(labels) == min(10, len(themes))
    assert themes.index[0] == "program_02_core"
    assert themes["n_theme_terms"].iloc[0] == 2  # with program_02
    drawn = themes.sort_values("padj", kind="stable")  # the first 10 themes, drawn by their own padj
    assert labels == [f"{t} [+{k - 1}]" if k > 1 else t for t, k in drawn["n_theme_terms"].items()]
    assert labels[0] == "program_03"  # its own padj is the smallest, though its theme comes second
    every = sl.pl.enrichment(ad, features=2, themes=False, return_fig=True).axes[0].get_yticklabels()
    assert [t.get_text() for t in every][:2] == sl.get.feature_terms(ad, features=2).index[:2].tolist()
    plt.close("all")


def test_enrichment_of_results_without_themes():
    """Results stored without term clusters (an older file) are drawn term by term, not refused."""
    ad = toy_sae(n_cells=800, n_genes=300, random_state=0)
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[2], alpha=0.5)  # fmt: skip
    ad.uns["sae_go"]["results"] = ad.uns["sae_go"]["results"].drop(columns=["term_cluster", "representative"])
    labels = [t.get_text() for t in sl.pl.enrichment(ad, features=2, return_fig=True).axes[0].get_yticklabels()]
    assert labels == sl.get.feature_terms(ad, features=2).index[:10].tolist()
    plt.close("all")

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

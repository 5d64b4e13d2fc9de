"""sl.pl.enrichment draws one dot per kept term."""

from __future__ import annotations

import importlib.util
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sclens as sl

_spec = importlib.util.spec_from_file_location("tl_conftest", pathlib.Path(__file__).parents[1] / "tl" / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)


def test_enrichment_plot():
    ad = _mod.toy_sae(n_cells=800, n_genes=300, random_state=0)
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[2], alpha=0.5)  # fmt: skip
    n = len(sl.get.feature_terms(ad, feature=2))
    fig = sl.pl.enrichment(ad, feature=2, n_terms=3, return_fig=True)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == min(3, n) and labels[0] == "program_02"
    assert len(ax.collections[0].get_offsets()) == min(3, n)
    _, ax2 = plt.subplots()
    assert sl.pl.enrichment(ad, feature=2, ax=ax2, show=False) is None
    plt.close("all")

"""sl.get.feature_terms reads one feature's terms."""

from __future__ import annotations

import pandas as pd
import pytest
from biology_fixtures import toy_sae

import sclens as sl


@pytest.fixture(scope="module")
def annotated():
    ad = toy_sae(n_cells=800, n_genes=300, random_state=0, extra=True)
    acts = ad.obsm["X_sae"].tolil()
    acts[:, 17] = 0
    acts[3, 17] = 1.0  # the tiny feature now active in one cell: it cannot be tested
    ad.obsm["X_sae"] = acts.tocsr()
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[0, 1, 16, 17])  # fmt: skip
    return ad


def test_feature_terms(annotated):
    t = sl.get.feature_terms(annotated, features=1)
    assert t.index[0] == "program_01"
    assert t["pvalue"].is_monotonic_increasing
    assert {"name", "namespace", "n_overlap", "set_size", "n_de", "odds_ratio", "pvalue", "padj"} <= set(t.columns)
    both = sl.get.feature_terms(annotated, features=[0, 1])
    assert both.columns[0] == "feature"
    assert set(both["feature"]) == {0, 1}
    pd.testing.assert_frame_equal(both[both["feature"] == 1].drop(columns="feature"), t)


def test_feature_terms_errors(annotated):
    reason = r"active in 1 selected cell\(s\); a group needs at least 2"
    with pytest.raises(KeyError, match=rf"Feature 17 was skipped by annotate_features: {reason}"):
        sl.get.feature_terms(annotated, features=17)
    with pytest.raises(KeyError, match="Feature 5 was not annotated under annotation_key 'sae_go'"):
        sl.get.feature_terms(annotated, features=5)
    with pytest.raises(KeyError, match=r"`adata.uns\['go'\]` not found; run `sl.tl.annotate_features"):
        sl.get.feature_terms(annotated, features=1, annotation_key="go")


def test_feature_terms_themes():
    """``themes=True``: one row per term cluster, its most specific term, clusters in the order of their best term."""
    ad = toy_sae(n_cells=800, n_genes=300, random_state=0)
    gs = ad.uns["toy"]["gene_sets"]
    genes = gs.loc[gs["source"] == "program_01", "target"].tolist()
    others = gs.loc[gs["source"] == "program_05", "target"].tolist()
    nested = pd.DataFrame({
        "source": ["program_01_core"] * 8 + ["program_01_wide"] * (len(genes) + 3),
        "target": genes[:8] + genes + others[:3],
    })  # fmt: skip
    sl.tl.annotate_features(ad, gene_sets=pd.concat([gs, nested], ignore_index=True), layer="counts", min_size=3,
                            high_quantile=0.98, features=[1, 2])  # fmt: skip
    terms = sl.get.feature_terms(ad, features=1)
    themes = sl.get.feature_terms(ad, features=1, themes=True)
    assert {"program_01", "program_01_core", "program_01_wide"} <= set(terms.index)
    assert len(themes) < len(terms)
    assert themes["n_theme_terms"].sum() == len(terms)
    assert themes["term_cluster"].tolist() == list(range(len(themes)))
    first = terms[terms["term_cluster"] == 0]
    assert {"program_01", "program_01_core", "program_01_wide"} <= set(first.index)
    assert themes.index[0] == first["ic"].idxmax() == "program_01_core"  # the smallest set: the most specific
    assert themes["n_theme_terms"].iloc[0] == len(first)
    pd.testing.assert_frame_equal(themes.drop(columns="n_theme_terms"), terms.loc[themes.index])
    both = sl.get.feature_terms(ad, features=[1, 2], themes=True)
    pd.testing.assert_frame_equal(both[both["feature"] == 1].drop(columns="feature"), themes)
    ad.uns["sae_go"]["results"] = ad.uns["sae_go"]["results"].drop(columns=["term_cluster", "representative"])
    with pytest.raises(
        ValueError, match=r"no term themes .* run `sl.tl.term_redundancy\(adata, annotation_key='sae_go'\)`"
    ):
        sl.get.feature_terms(ad, features=1, themes=True)

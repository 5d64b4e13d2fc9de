"""sl.tl.compare_features: optimal matching by Jaccard of GO term sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from biology_fixtures import add_go, toy_with_sae
from scipy import stats

from sclens.tl._compare import compare_features


@pytest.fixture(scope="module")
def annotated():
    return add_go(toy_with_sae(n_cells=100))


def _shuffled(adata, seed=0):
    """Same terms and term counts per feature, but terms dealt out to features at random."""
    other = adata.copy()
    res = other.uns["sae_go"]["results"].copy()
    perm = np.random.default_rng(seed).permutation(len(res))
    res[["term", "name", "namespace"]] = res[["term", "name", "namespace"]].to_numpy()[perm]
    other.uns["sae_go"]["results"] = res
    return other


def test_self_comparison_is_one(annotated):
    out = compare_features(annotated, annotated)
    assert out["mean_similarity"] == pytest.approx(1.0)
    assert (out["matches"]["feature_a"].to_numpy() == out["matches"]["feature_b"].to_numpy()).all()
    assert out["spearman"] == pytest.approx(1.0) and out["pearson"] == pytest.approx(1.0)
    assert out["unique_terms_a"].size == 0 and out["unique_terms_b"].size == 0
    assert out["n_features_a"] == out["n_features_b"] == 16


def test_shuffled_copy_is_much_less(annotated):
    out = compare_features(annotated, _shuffled(annotated))
    assert out["mean_similarity"] < 0.5
    assert len(out["matches"]) == 16


def test_matches_against_brute_force(annotated):
    other = _shuffled(annotated, seed=3)
    other.uns["sae_go"]["results"] = other.uns["sae_go"]["results"].query("feature < 12")
    out = compare_features(annotated, other)
    sets_a = annotated.uns["sae_go"]["results"].groupby("feature")["term"].apply(set)
    sets_b = other.uns["sae_go"]["results"].groupby("feature")["term"].apply(set)
    jac = np.array([[len(a & b) / len(a | b) for b in sets_b] for a in sets_a])
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(-jac)
    assert out["mean_similarity"] == pytest.approx(jac[r, c].mean())
    assert len(out["matches"]) == 12
    row = out["matches"].iloc[0]
    i, j = sets_a.index.get_loc(row["feature_a"]), sets_b.index.get_loc(row["feature_b"])
    assert row["jaccard"] == pytest.approx(jac[i, j])
    counts = out["term_counts"]
    res_b = other.uns["sae_go"]["results"]
    n_b = res_b.drop_duplicates(["feature", "term"]).query("term == 'GO:0009000'").shape[0]
    assert counts.loc["GO:0009000", "n_b"] == n_b
    assert out["spearman"] == pytest.approx(stats.spearmanr(counts["n_a"], counts["n_b"]).statistic)
    assert out["pearson"] == pytest.approx(stats.pearsonr(counts["n_a"], counts["n_b"]).statistic)


def test_shared_and_unique_terms(annotated):
    other = annotated.copy()
    res = other.uns["sae_go"]["results"].copy()
    extra = res.iloc[:1].copy()
    extra["term"] = "GO:9999999"
    other.uns["sae_go"]["results"] = pd.concat([res[res["term"] != "GO:0009001"], extra], ignore_index=True)
    out = compare_features(annotated, other)
    assert list(out["unique_terms_a"]) == ["GO:0009001"]
    assert list(out["unique_terms_b"]) == ["GO:9999999"]
    assert "GO:0009000" in out["shared_terms"]
    assert 0.5 < out["mean_similarity"] < 1.0


def test_bad_input(annotated):
    bare = toy_with_sae(n_cells=50)
    no_annotation = r"`adata.uns\['sae_go'\]` not found; run `sl.tl.annotate_features\(adata, gene_sets=\.\.\., key_added='sae_go'\)`"
    with pytest.raises(KeyError, match=no_annotation):
        compare_features(annotated, bare)
    with pytest.raises(TypeError, match="adata_b must be an AnnData"):
        compare_features(annotated, annotated.uns["sae_go"]["results"])
    with pytest.raises(ValueError, match="adata_a has no annotated feature"):
        compare_features(annotated, annotated, namespaces=["CC"])

"""sl.tl.feature_specificity: planted local/global features, both rules, scipy reference, storage."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import toy_with_sae
from scipy import stats

from sclens.tl._specificity import feature_specificity


@pytest.fixture(scope="module")
def toy():
    return toy_with_sae(n_cells=600)


@pytest.mark.parametrize("method", ["paper", "rank"])
def test_planted_local_and_global(toy, method):
    adata = feature_specificity(toy, groupby="cell_type", method=method, copy=True)
    feats = adata.uns["sae"]["features"]
    kind = toy.uns["toy"]["program_kind"]
    group = toy.uns["toy"]["program_group"]
    n_prog = kind.size
    local = np.flatnonzero(kind == "local")
    assert (feats["kind"].iloc[local] == "local").all()
    assert (feats["top_group"].iloc[local].to_numpy() == group[local]).all()
    glob = np.flatnonzero(kind == "global")
    assert (feats["kind"].iloc[glob] == "global").all()
    assert (feats["kind"].iloc[n_prog:] == "dead").all()
    assert (feats["effect"].iloc[local] > 0.3).all()
    params = adata.uns["sae"]["specificity"]["params"]
    assert params["n_local"] == local.size and params["n_global"] == glob.size and params["n_dead"] == 2
    # the user's object is untouched with copy=True
    assert "specificity" not in toy.uns["sae"]


def test_paper_rule_matches_manual(toy):
    adata = feature_specificity(toy, groupby="cell_type", copy=True)
    x = toy.obsm["X_sae"].toarray().astype(np.float64)
    ct = toy.obs["cell_type"].astype(str).to_numpy()
    feats = adata.uns["sae"]["features"]
    for f in (0, 5, 9):
        g = feats["top_group"].iloc[f]
        a_in, a_out = x[ct == g, f], x[ct != g, f]
        diff = a_in.mean() - a_out.mean()
        se = a_in.std(ddof=1) / np.sqrt(a_in.size) + a_out.std(ddof=1) / np.sqrt(a_out.size)
        assert feats["effect"].iloc[f] == pytest.approx(diff, rel=1e-6)
        assert feats["pvalue"].iloc[f] == pytest.approx(min(2 * stats.norm.sf(diff / se), 1), rel=1e-5, abs=1e-300)
        # the paper's rule and the stored p-value agree
        assert (diff > 1.96 * se) == (feats["pvalue"].iloc[f] < 0.05)
    means = adata.uns["sae"]["specificity"]["group_means"]
    assert list(means.index) == ["type_0", "type_1", "type_2", "type_3"]
    np.testing.assert_allclose(means.loc["type_1", "3"], x[ct == "type_1", 3].mean(), rtol=1e-6)


def test_rank_matches_scipy_with_ties(toy):
    adata = toy.copy()
    x = adata.obsm["X_sae"].toarray()
    x[:60, 9] = x[60:120, 9]  # ties among non-zero values
    x[:, 10] = np.round(x[:, 10], 1)
    from scipy import sparse

    adata.obsm["X_sae"] = sparse.csr_matrix(x)
    feature_specificity(adata, groupby="cell_type", method="rank")
    feats = adata.uns["sae"]["features"]
    ct = adata.obs["cell_type"].astype(str).to_numpy()
    x = x.astype(np.float64)
    for f in (0, 4, 9, 10):
        g = feats["top_group"].iloc[f]
        ref = stats.mannwhitneyu(x[ct == g, f], x[ct != g, f], alternative="greater")
        assert feats["pvalue"].iloc[f] == pytest.approx(ref.pvalue, rel=1e-6)
        assert feats["auc"].iloc[f] == pytest.approx(ref.statistic / ((ct == g).sum() * (ct != g).sum()))
    assert (feats["padj"] >= feats["pvalue"] - 1e-15).all()


def test_effect_floor_makes_rank_stricter(toy):
    loose = feature_specificity(toy, groupby="cell_type", method="rank", min_effect=0.5, copy=True)
    strict = feature_specificity(toy, groupby="cell_type", method="rank", min_effect=0.9, copy=True)
    n_loose = loose.uns["sae"]["specificity"]["params"]["n_local"]
    n_strict = strict.uns["sae"]["specificity"]["params"]["n_local"]
    assert n_strict < n_loose


def test_missing_labels_are_left_out(toy):
    adata = toy.copy()
    ct = adata.obs["cell_type"].astype(object)
    ct.iloc[:50] = np.nan
    adata.obs["ct"] = pd.Categorical(ct)
    feature_specificity(adata, groupby="ct")
    x = adata.obsm["X_sae"].toarray()
    expected = x[50:][adata.obs["ct"].iloc[50:].astype(str).to_numpy() == "type_2", 4].mean()
    assert adata.uns["sae"]["specificity"]["group_means"].loc["type_2", "4"] == pytest.approx(expected, rel=1e-6)


def test_h5ad_round_trip(toy, tmp_path):
    adata = feature_specificity(toy, groupby="cell_type", copy=True)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.uns["sae"]["features"], adata.uns["sae"]["features"], check_dtype=False)
    pd.testing.assert_frame_equal(
        back.uns["sae"]["specificity"]["group_means"], adata.uns["sae"]["specificity"]["group_means"]
    )
    assert back.uns["sae"]["specificity"]["params"]["method"] == "paper"


def test_bad_input(toy):
    with pytest.raises(KeyError, match=r"`adata.obs\['nope'\]` not found"):
        feature_specificity(toy, groupby="nope")
    one = toy.copy()
    one.obs["one"] = "a"
    with pytest.raises(ValueError, match="has 1 group"):
        feature_specificity(one, groupby="one")
    one.obs["nan"] = pd.Categorical(np.where(np.arange(one.n_obs) < 10, "a", None))
    with pytest.raises(ValueError, match=r"has 1 group\(s\) \(590 cells with a missing label are left out\)"):
        feature_specificity(one, groupby="nan")
    one.obs["all_nan"] = np.nan
    with pytest.raises(ValueError, match=r"has 0 group\(s\) \(600 cells"):
        feature_specificity(one, groupby="all_nan")
    assert "specificity" not in one.uns["sae"]  # nothing written before the checks
    with pytest.raises(KeyError, match="No SAE run under key 'other'"):
        feature_specificity(toy, groupby="cell_type", sae_key="other")
    with pytest.raises(ValueError, match="method must be one of"):
        feature_specificity(toy, groupby="cell_type", method="t-test")
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        feature_specificity(toy, groupby="cell_type", alpha=5)
    with pytest.raises(ValueError, match=r"key_added='features' would overwrite the SAE run's `features`"):
        feature_specificity(one, groupby="cell_type", key_added="features")
    assert "specificity" not in one.uns["sae"]


def test_group_names_with_slashes_write_to_h5ad(toy, tmp_path):
    adata = toy.copy()
    adata.obs["ct"] = adata.obs["cell_type"].astype(str).str.replace("type_", "CD4+/type ").astype("category")
    feature_specificity(adata, groupby="ct")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    expected = ["CD4+/type 0", "CD4+/type 1", "CD4+/type 2", "CD4+/type 3"]
    assert list(back.uns["sae"]["specificity"]["group_means"].index) == expected

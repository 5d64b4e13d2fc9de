from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl


def test_planted_features_recover_x2_not_x(planted):
    df = sl.sim.recovery(planted, n_components=30, threshold=0.95)
    assert set(df["method"]) == {"sae", "pca", "ica", "svd"}
    assert (df["n_cells"] == planted.n_obs).all()  # baselines on the same cells
    sae = df[df["method"] == "sae"].set_index("family")
    assert sae.loc["X''", "mean_best_r"] > 0.999
    assert sae.loc["X''", "frac_recovered"] == 1.0
    assert sae.loc["X''", "features_per_variable"] == 1.0
    assert sae.loc["X''", "redundancy"] == 0
    assert sae.loc["X", "mean_best_r"] < 0.5
    assert sae.loc["X''", "n_live"] == 20
    np.testing.assert_allclose(sae.loc["X''", "l0"], planted.obsm["X_sae"].getnnz(axis=1).mean())
    pca = df[df["method"] == "pca"].set_index("family")
    assert pca.loc["X''", "n_live"] == 30
    assert pca.loc["X''", "mean_best_r"] < sae.loc["X''", "mean_best_r"]


def test_per_variable_table_and_redundancy(planted):
    x2 = np.clip(planted.obsm["X_celltype_altered"], 0, None)
    # two copies of every X'' variable: each variable matched by 2 features -> 1 redundant pair each
    planted.obsm["X_sae"] = sparse.csr_matrix(np.hstack([x2, 2 * x2]))
    per = sl.sim.recovery(planted, targets=["X''"], baselines=(), per_variable=True)
    assert list(per.columns) == ["method", "family", "variable", "best_r", "best_feature", "n_above"]
    assert (per["n_above"] == 2).all()
    assert (per["best_feature"] % 20 == per["variable"]).all()
    summary = sl.sim.recovery(planted, targets=["X''"], baselines=())
    assert summary["redundancy"].item() == 20


def test_shuffled_features_recover_nothing(planted):
    rng = np.random.default_rng(0)
    x2 = np.clip(planted.obsm["X_celltype_altered"], 0, None)
    planted.obsm["X_sae"] = sparse.csr_matrix(x2[rng.permutation(planted.n_obs)])
    df = sl.sim.recovery(planted, targets={"X''": "X_celltype_altered"}, baselines=())
    assert df["mean_best_r"].item() < 0.15
    assert df["frac_recovered"].item() == 0


def test_connectivity_far_above_shuffled_m(planted):
    df = sl.sim.connectivity_recovery(planted)
    assert list(df["percentile"]) == [20, 30, 40, 50, 60, 70]
    assert (df["n_features"] == 20).all()
    assert (df["recall"] > 0.95).all()
    # chance recall of a shuffled M is about 1 - percentile / 100
    np.testing.assert_allclose(df["recall_shuffled"], 1 - df["percentile"] / 100, atol=0.12)
    row70 = df.set_index("percentile").loc[70]
    assert row70["recall"] - row70["recall_shuffled"] > 0.5
    assert row70["frac_significant"] == 1.0
    per = sl.sim.connectivity_recovery(planted, percentiles=(50,), per_feature=True)
    # every planted feature is matched to its own X'' variable
    np.testing.assert_array_equal(per["best_variable"], per["feature"])
    assert (per["pvalue"] < 1e-3).all()


def test_superposition_fit_of_a_planted_embedding(small_large):
    adata = small_large.copy()
    rng = np.random.default_rng(0)
    adata.obsm["X_lin"] = adata.obsm["X_celltype_altered"] @ rng.normal(size=(20, 20))
    df = sl.sim.superposition_fit(adata, use_rep="X_lin")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["family", "variable", "r2", "n_train", "n_test"]
    r2 = df.groupby("family", observed=True)["r2"].mean()
    assert r2["X''"] > 0.999
    assert r2["Y"] > 0.999  # Y = X'' M^T is linear in X''
    assert r2["X"] < 0.2
    assert df["n_test"].iloc[0] == 400


def test_errors(small_large):
    with pytest.raises(KeyError, match=r"No SAE run under key 'sae' \(it needs `adata.obsm\['X_sae'\]`\)"):
        sl.sim.recovery(small_large)
    with pytest.raises(ValueError, match="Unknown variable families"):
        sl.sim.superposition_fit(small_large, use_rep="X_programs", targets=["Z"])
    with pytest.raises(ValueError, match="Unknown baselines"):
        sl.sim.recovery(small_large, baselines=("nmf",))
    with pytest.raises(ValueError, match="percentiles must be"):
        sl.sim.connectivity_recovery(small_large, percentiles=(0, 50))

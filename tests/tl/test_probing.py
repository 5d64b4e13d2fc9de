"""Sparse probing: planted labels recovered, held-out groups, agreement with sklearn, storage, errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import toy_sae
from scipy import sparse

import sclens as sl
from sclens.tl._trust._probing import standardized_difference


@pytest.fixture(scope="module")
def probed():
    adata = toy_sae(n_cells=1200, random_state=0)
    adata.uns["sae"]["run_id"] = "run-a"
    rng = np.random.default_rng(0)
    adata.obs["donor"] = pd.Categorical(rng.choice([f"d{i}" for i in range(5)], adata.n_obs))
    adata.obs["has_3"] = pd.Categorical(np.where(adata.obsm["X_sae"][:, 3].toarray().ravel() > 0, "on", "off"))
    adata.obs["shuffled"] = pd.Categorical(rng.permutation(adata.obs["cell_type"].to_numpy()))
    sl.tl.sparse_probing(adata, groupby="cell_type", split_by="donor", k=(1, 2, 8))
    return adata


def test_planted_codes_beat_the_embedding_dimensions(probed):
    summary = probed.uns["sae"]["probing"]["summary"].set_index(["method", "k"])
    assert summary.loc[("sae", 2), "balanced_accuracy"] >= 0.9  # two local programs per type: codes are the truth
    for base in ("embedding", "pca", "ica"):  # the embedding mixes the planted atoms in every dimension
        assert summary.loc[("sae", 2), "balanced_accuracy"] > summary.loc[(base, 2), "balanced_accuracy"] + 0.05
    assert (summary["n_categories"] == 4).all()


def test_a_label_made_by_one_feature_is_probed_exactly_and_noise_is_chance(probed):
    adata = probed.copy()
    sl.tl.sparse_probing(adata, groupby="has_3", k=1, baselines=(), key_added="one")
    res = adata.uns["sae"]["one"]["results"]
    assert (res["features"] == "3").all()
    assert (res["balanced_accuracy"] == 1.0).all()
    sl.tl.sparse_probing(adata, groupby="shuffled", k=(1, 4), baselines=(), key_added="noise")
    acc = adata.uns["sae"]["noise"]["summary"]["balanced_accuracy"]
    assert (np.abs(acc - 0.5) < 0.08).all()


def test_held_out_donors_and_agreement_with_sklearn(probed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    res = probed.uns["sae"]["probing"]
    params = res["params"]
    test = probed.obs["donor"].isin(params["test_groups"]).to_numpy()
    assert params["n_test"] == test.sum()
    assert 0 < len(params["test_groups"]) < 5
    assert params["sae_run_id"] == "run-a"
    row = res["results"].query("method == 'sae' and category == 'type_1' and k == 2").iloc[0]
    cols = [int(c) for c in row["features"].split(",")]
    x = probed.obsm["X_sae"][:, cols].toarray().astype(np.float64)
    y = (probed.obs["cell_type"] == "type_1").to_numpy()
    x = (x - x[~test].mean(0)) / x[~test].std(0)
    probe = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x[~test], y[~test])
    assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[test], probe.predict(x[test])))


def test_standardized_difference_sparse_matches_dense():
    rng = np.random.default_rng(1)
    dense = np.where(rng.random((200, 7)) < 0.3, rng.gamma(2.0, size=(200, 7)), 0.0)
    y = rng.random(200) < 0.4
    a, b = dense[y], dense[~y]
    pooled = np.sqrt(((y.sum() - 1) * a.var(0, ddof=1) + ((~y).sum() - 1) * b.var(0, ddof=1)) / (200 - 2))
    expected = np.abs(a.mean(0) - b.mean(0)) / pooled
    np.testing.assert_allclose(standardized_difference(sparse.csr_matrix(dense), y), expected, rtol=1e-10)
    np.testing.assert_allclose(standardized_difference(dense, y), expected, rtol=1e-10)


def test_probing_survives_h5ad(probed, tmp_path):
    probed.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad").uns["sae"]["probing"]
    pd.testing.assert_frame_equal(back["summary"], probed.uns["sae"]["probing"]["summary"], check_dtype=False)
    assert list(back["params"]["test_groups"]) == list(probed.uns["sae"]["probing"]["params"]["test_groups"])


def test_probing_errors(probed):
    adata = probed.copy()
    with pytest.raises(ValueError, match=r"baselines must be among"):
        sl.tl.sparse_probing(adata, groupby="cell_type", baselines=("umap",))
    with pytest.raises(ValueError, match=r"k must be one or more positive integers"):
        sl.tl.sparse_probing(adata, groupby="cell_type", k=0)
    with pytest.raises(ValueError, match=r"split_by='cell_type' is the label probed"):
        sl.tl.sparse_probing(adata, groupby="cell_type", split_by="cell_type")
    with pytest.raises(KeyError, match=r"`adata.obs\['batch'\]` not found"):
        sl.tl.sparse_probing(adata, groupby="batch")
    assert set(adata.uns["sae"]) == set(probed.uns["sae"])  # nothing written by a failed call

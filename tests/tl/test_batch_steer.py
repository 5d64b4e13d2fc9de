"""sl.tl.batch_steer on the toy (storage, reading `batch_driven`, errors) and the kNN integration scores."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from biology_fixtures import toy_with_sae

from sclens.tl._steering._batch_steer import batch_steer
from sclens.tl._steering._mixing import batch_entropy, integration_scores, knn, label_asw, label_purity


@pytest.fixture(scope="module")
def toy():
    adata = toy_with_sae(n_cells=300, random_state=3)
    rng = np.random.default_rng(0)
    adata.obs["batch"] = pd.Categorical(rng.choice(["b0", "b1"], adata.n_obs))
    return adata


def test_batch_entropy_and_purity_by_hand():
    batch = np.array(["a", "a", "b", "b"])
    nn = np.array([[1, 2], [0, 1], [3, 3], [0, 2]])  # mixed, pure a, pure b, mixed
    assert batch_entropy(nn, batch) == pytest.approx((1 + 0 + 0 + 1) / 4)
    labels = np.array(["x", "y", "y", "y"])
    assert label_purity(nn, labels) == pytest.approx((0 + 0.5 + 1 + 0.5) / 4)
    three = np.array(["a", "b", "c", "a"])
    nn3 = np.array([[1, 2, 3]] * 4)
    expected = stats.entropy([1, 1, 1]) / np.log(3)
    assert batch_entropy(nn3, three) == pytest.approx(expected)
    assert np.isnan(batch_entropy(nn, np.array(["a"] * 4)))


def test_scores_agree_with_sklearn_and_separate_cases():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    labels = np.repeat(["t0", "t1"], 100)
    x = rng.normal(size=(200, 3)) + (labels == "t1")[:, None] * 6.0
    mixed, split = rng.choice(["b0", "b1"], 200), np.tile(np.repeat(["b0", "b1"], 50), 2)
    x_split = x + (split == "b1")[:, None] * np.array([0, 0, 4.0])
    assert label_asw(x, labels, max_cells=500, seed=0) == pytest.approx((silhouette_score(x, labels) + 1) / 2)
    scores = integration_scores({"mixed": x, "split": x_split}, mixed, labels)
    assert scores.loc["mixed", "label_purity"] > 0.99
    assert scores.loc["mixed", "label_asw"] > 0.8
    scores = integration_scores({"mixed": x, "split": x_split}, split, labels)
    assert scores.loc["mixed", "batch_entropy"] > 0.9 > 0.3 > scores.loc["split", "batch_entropy"]
    assert knn(x, 5).shape == (200, 5)
    assert (knn(x, 5) != np.arange(200)[:, None]).all()


def test_batch_steer_storage_and_clamp(toy, tmp_path):
    out = batch_steer(toy, batch_key="batch", features=[3, 9], label_key="cell_type", copy=True)
    assert "X_batch_steered" not in toy.obsm  # copy=True leaves the input alone
    acts = toy.obsm["X_sae"].toarray()
    b = toy.obs["batch"].to_numpy()
    clamp = np.mean([acts[b == k][:, [3, 9]].mean(0) for k in ("b0", "b1")], axis=0)
    info = out.uns["batch_steered"]
    np.testing.assert_allclose(info["clamped_to"], clamp, rtol=1e-6)
    w = toy.uns["sae"]["weights"]["W_dec"]
    expected = toy.obsm["X_emb"] + (clamp[None, :] - acts[:, [3, 9]]) @ w[[3, 9]]
    np.testing.assert_allclose(out.obsm["X_batch_steered"], expected, atol=1e-5)
    assert list(info["scores"].index) == ["X_emb", "X_batch_steered"]
    assert info["params"]["batch_key"] == "batch"
    assert "sae_run_id" not in info["params"]
    # the chance baseline: 20 random sets of two other live features, clamped and scored the same way
    base = info["baseline"]
    assert list(base.index) == ["chosen"] + [f"random_{i}" for i in range(20)]
    assert base.loc["chosen", "features"] == "3,9"
    scores = info["scores"]
    gain = scores.loc["X_batch_steered"] - scores.loc["X_emb"]
    np.testing.assert_allclose(base.iloc[0, 1:].to_numpy(dtype=float), gain.to_numpy(), rtol=1e-12)
    params = info["params"]
    assert params["batch_entropy_gain"] == base.loc["chosen", "batch_entropy_gain"]
    assert params["batch_entropy_gain_random"] == pytest.approx(np.median(base["batch_entropy_gain"].iloc[1:]))
    n_as_good = (base["batch_entropy_gain"].iloc[1:] >= params["batch_entropy_gain"]).sum()
    assert params["batch_entropy_gain_pvalue"] == pytest.approx((1 + n_as_good) / 21)
    for feats in base["features"].iloc[1:]:
        drawn = {int(f) for f in feats.split(",")}
        assert len(drawn) == 2
        assert not drawn & {3, 9}
        assert drawn <= set(range(16))  # live features only
    # a random set's scores: its features clamped to their across-batch means
    f = [int(v) for v in base.loc["random_0", "features"].split(",")]
    clamp_r = np.mean([acts[b == k][:, f].mean(0) for k in ("b0", "b1")], axis=0)
    moved = toy.obsm["X_emb"] + (clamp_r[None, :] - acts[:, f]) @ w[f]
    ref = integration_scores({"r": moved}, b, toy.obs["cell_type"].to_numpy())
    assert base.loc["random_0", "batch_entropy_gain"] == pytest.approx(
        ref.loc["r", "batch_entropy"] - scores.loc["X_emb", "batch_entropy"]
    )
    out.write_h5ad(tmp_path / "b.h5ad")
    back = ad.read_h5ad(tmp_path / "b.h5ad")
    pd.testing.assert_frame_equal(back.uns["batch_steered"]["scores"], info["scores"])
    pd.testing.assert_frame_equal(back.uns["batch_steered"]["baseline"], base)


def test_batch_steer_reads_batch_driven(toy):
    adata = toy.copy()
    adata.uns["sae"]["run_id"] = "r1"
    table = adata.uns["sae"]["features"].copy()
    table["batch_driven"] = False
    table.loc[["4", "10"], "batch_driven"] = True
    adata.uns["sae"]["features"] = table
    batch_steer(adata, batch_key="batch", key_added="bs", n_random=0)
    assert list(adata.uns["bs"]["features"]) == [4, 10]
    assert list(adata.uns["bs"]["baseline"].index) == ["chosen"]  # no random set
    assert np.isnan(adata.uns["bs"]["params"]["batch_entropy_gain_pvalue"])
    assert adata.uns["bs"]["params"]["sae_run_id"] == "r1"
    assert np.isnan(adata.uns["bs"]["scores"]["label_purity"]).all()  # no label_key


def test_batch_steer_errors(toy):
    with pytest.raises(KeyError, match=r"No `batch_driven` column .* run `sl\.tl\.feature_alignment"):
        batch_steer(toy, batch_key="batch")
    adata = toy.copy()
    table = adata.uns["sae"]["features"].copy()
    table["batch_driven"] = False
    adata.uns["sae"]["features"] = table
    with pytest.raises(ValueError, match="No feature is flagged `batch_driven`"):
        batch_steer(adata, batch_key="batch")
    with pytest.raises(KeyError, match=r"batch_key='donor': `adata.obs\['donor'\]` not found"):
        batch_steer(adata, batch_key="donor", features=[1])
    with pytest.raises(KeyError, match=r"`adata.obsm\['X_scVI'\]` not found"):
        batch_steer(adata, batch_key="batch", features=[1], compare=["X_scVI"])
    with pytest.raises(ValueError, match="n_random must be a non-negative integer"):
        batch_steer(adata, batch_key="batch", features=[1], n_random=-2)
    with pytest.raises(ValueError, match=r"n_random=20: only 0 other live feature\(s\) to draw random sets of 16"):
        batch_steer(adata, batch_key="batch", features=list(range(16)))
    adata.obs["one"] = "b0"
    with pytest.raises(ValueError, match=r"batch_key='one': batch steering needs at least 2 batches, .* has 1"):
        batch_steer(adata, batch_key="one", features=[1])
    adata.obs["one"] = pd.Categorical(np.where(adata.obs["batch"] == "b0", "b0", None), categories=["b0", "b1"])
    with pytest.raises(ValueError, match=r"has 1 among labelled cells"):  # an unused category is no batch
        batch_steer(adata, batch_key="one", features=[1])
    assert "batch_steered" not in adata.uns
    assert "X_batch_steered" not in adata.obsm


def test_batch_steer_leaves_missing_batch_labels_out(toy, caplog):
    """Issue 23: a missing batch label became a third batch "nan"; it is left out, as everywhere else."""
    adata = toy.copy()
    missing = np.arange(adata.n_obs) % 10 == 0
    adata.obs["batch"] = adata.obs["batch"].astype(object).where(~missing, None).astype("category")
    with caplog.at_level("WARNING", logger="sclens"):
        batch_steer(adata, batch_key="batch", features=[3, 9], label_key="cell_type")
    assert f"{missing.sum()} cell(s) with a missing `batch` or `cell_type` label are left out" in caplog.text
    acts = adata.obsm["X_sae"].toarray()
    b = adata.obs["batch"].to_numpy()
    clamp = np.mean([acts[b == k][:, [3, 9]].mean(0) for k in ("b0", "b1")], axis=0)  # two batches, not three
    np.testing.assert_allclose(adata.uns["batch_steered"]["clamped_to"], clamp, rtol=1e-6)
    ref = integration_scores(
        {"X_emb": adata.obsm["X_emb"][~missing]}, b[~missing], adata.obs["cell_type"].to_numpy()[~missing]
    )
    assert adata.uns["batch_steered"]["scores"].loc["X_emb", "batch_entropy"] == pytest.approx(
        ref.loc["X_emb", "batch_entropy"]
    )

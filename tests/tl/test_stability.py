"""Seed stability: Hungarian matching of decoders, planted features reproduced, storage and errors."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sclens as sl
from sclens.sae import SAEConfig, SparseAutoencoder, from_arrays
from sclens.tl._trust._consensus import consensus_weights
from sclens.tl._trust._stability import match_decoders, unit_rows


def test_match_decoders_is_the_best_one_to_one_matching():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 10))
    perm = rng.permutation(6)
    other = ref[perm] * np.array([1, -1, 2, 1, -3, 1])[:, None] + 0.05 * rng.normal(size=(6, 10))
    matched, score = match_decoders(ref, other)
    np.testing.assert_array_equal(perm[matched], np.arange(6))  # each row found again, sign and scale ignored
    assert (score > 0.98).all()
    noisy = rng.normal(size=(6, 10))
    _, score = match_decoders(ref, noisy)
    cos = np.abs(unit_rows(ref) @ unit_rows(noisy).T)
    best = max(cos[np.arange(6), list(p)].sum() for p in itertools.permutations(range(6)))
    assert score.sum() == pytest.approx(best)  # agrees with brute force over all 720 matchings
    matched, score = match_decoders(ref, other, other_live=np.arange(6) != 0)  # feature 0 of `other` is dead
    dead_partner = perm[0]
    assert matched[dead_partner] == -1
    assert score[dead_partner] == 0


@pytest.fixture(scope="module")
def fitted(one_thread):
    """A 20-feature TopK SAE on toy data whose 16 planted atoms are nearly orthogonal (48 dims), 2 refits."""
    adata = sl.datasets.toy(n_cells=600, random_state=2, n_dims=48, noise=0.02)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=20, k=4, n_epochs=80, batch_size=64, lr=3e-3, random_state=0)
    sl.tl.feature_stability(adata, n_seeds=2, groupby="cell_type", consensus="consensus")
    return adata


def test_planted_features_are_stable_and_the_others_are_not(fitted):
    run = fitted.uns["sae"]
    stability = run["features"]["stability"].to_numpy()
    truth = np.abs(unit_rows(run["weights"]["W_dec"]) @ unit_rows(fitted.uns["toy"]["atoms"]).T).max(axis=1)
    planted, spurious = truth >= 0.95, truth < 0.8
    assert planted.sum() >= 12
    assert spurious.sum() >= 2
    assert (stability[planted] >= 0.9).mean() >= 0.8  # a feature that is a planted atom comes back
    assert (stability[spurious] < 0.9).all()  # one that is no atom does not
    params = run["stability"]["params"]
    assert params["share_reproduced"] == pytest.approx((stability >= 0.9).mean())
    assert list(params["seeds"]) == [1, 2]
    assert params["sae_run_id"] == run["run_id"]
    seeds = run["stability"]["seeds"]
    assert list(seeds.index) == ["1", "2"]
    assert (seeds["n_live"] + seeds["n_dead"] == 20).all()
    assert (seeds["n_local"] + seeds["n_global"] == seeds["n_live"]).all()  # the paper's table S6 per seed
    assert (seeds["l0"] == 4).all()
    cos = run["stability"]["matched_cosine"].to_numpy()
    np.testing.assert_allclose(np.median(cos, axis=1), stability)


def test_consensus_keeps_the_reproduced_features(fitted):
    run, cons = fitted.uns["sae"], fitted.uns["consensus"]
    stability = run["features"]["stability"].to_numpy()
    ref_ids = cons["features"]["reference_feature"].to_numpy()
    np.testing.assert_array_equal(ref_ids, np.flatnonzero(stability >= 0.9))
    assert cons["params"]["consensus_of"] == "sae"
    assert run["stability"]["params"]["consensus"] == f"stored under 'consensus' ({ref_ids.size} features)"
    assert fitted.obsm["X_consensus"].shape == (fitted.n_obs, ref_ids.size)
    w_cons, w_ref = unit_rows(cons["weights"]["W_dec"]), unit_rows(run["weights"]["W_dec"][ref_ids])
    assert (np.einsum("fd,fd->f", w_cons, w_ref) >= 0.9).all()  # each stands for its reference feature
    atoms = unit_rows(fitted.uns["toy"]["atoms"])
    ref_truth = np.abs(w_ref @ atoms.T).max(axis=1)
    cons_truth = np.abs(w_cons @ atoms.T).max(axis=1)
    assert np.median(cons_truth) >= np.median(ref_truth) - 0.005  # averaging the seeds does not blur the atoms
    assert (cons_truth >= 0.95).mean() >= 0.9
    assert cons["metrics"]["fvu"] < 0.5  # the reproduced features still reconstruct most of the embedding


@pytest.mark.parametrize("architecture", ["batchtopk", "jumprelu"])
def test_consensus_keeps_the_activation_scale_of_thresholded_saes(architecture):
    """A consensus of runs that agree is the reference restricted to the kept features, activations included.

    Folded decoder rows carry the input scale (here 3, not 1) and BatchTopK's / JumpReLU's thresholds
    are in activation units: putting decoder rows back to unit length and scaling the encoder to match
    shrank every activation by the scale and silenced most of them (BatchTopK consensus L0 1.5 of 4, FVU
    0.38 against 0.02 on the toy data of ``fitted``).
    """
    import torch

    torch.manual_seed(0)
    cfg = SAEConfig(input_dim=8, n_features=6, architecture=architecture, k=2)
    model = SparseAutoencoder(cfg, seed=0)
    model.set_normalization_(torch.zeros(8), torch.tensor(3.0))
    x = 3 * torch.randn(200, 8)
    with torch.no_grad():
        pre = model._encoder_input(model._normalize(x)) @ model.W_enc + model.b_enc
        if architecture == "batchtopk":  # a threshold that silences some of the top candidates
            model.threshold.fill_(float(pre.clamp_min(0).quantile(0.8)))
    model.eval()
    ref = {k: v.numpy() for k, v in model.folded_state().items()}
    assert np.linalg.norm(ref["W_dec"], axis=1) == pytest.approx(3 * np.ones(6), rel=1e-5)
    keep = np.array([True, True, False, True, False, True])
    cons = consensus_weights([ref, ref], np.arange(6)[:, None], np.ones((6, 1)), keep, 0.9)
    np.testing.assert_allclose(cons["W_dec"], ref["W_dec"][keep], rtol=1e-5)
    np.testing.assert_allclose(cons["W_enc"], ref["W_enc"][:, keep], rtol=1e-5)
    small = from_arrays({**cfg.to_dict(), "n_features": 4}, cons).eval()
    with torch.no_grad():
        full, part = model.encode(x).numpy(), small.encode(x).numpy()
    assert (full[:, keep] > 0).mean() > 0.1
    np.testing.assert_allclose(part, full[:, keep], rtol=1e-4, atol=1e-5)
    # a refit whose directions differ a little: the averaged rows keep the runs' mean length
    other = {**ref, "W_dec": ref["W_dec"] * 1.2 + 0.3 * np.roll(ref["W_dec"], 1, axis=1)}
    cos = np.einsum("fd,fd->f", unit_rows(ref["W_dec"]), unit_rows(other["W_dec"]))
    cons = consensus_weights([ref, other], np.arange(6)[:, None], cos[:, None], keep, 0.9)
    assert cos[keep].min() >= 0.9
    mean_length = (np.linalg.norm(ref["W_dec"], axis=1) + np.linalg.norm(other["W_dec"], axis=1))[keep] / 2
    np.testing.assert_allclose(np.linalg.norm(cons["W_dec"], axis=1), mean_length, rtol=1e-5)
    np.testing.assert_allclose(cons["W_enc"], ref["W_enc"][:, keep], rtol=1e-5)  # the same encoder: not rescaled


def test_stability_survives_h5ad(fitted, tmp_path):
    fitted.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    res, orig = back.uns["sae"]["stability"], fitted.uns["sae"]["stability"]
    pd.testing.assert_frame_equal(res["matched_cosine"], orig["matched_cosine"])
    pd.testing.assert_frame_equal(res["matched_feature"], orig["matched_feature"])
    assert res["params"]["share_reproduced"] == orig["params"]["share_reproduced"]
    np.testing.assert_array_equal(back.uns["sae"]["features"]["stability"], fitted.uns["sae"]["features"]["stability"])


def test_stability_refuses_what_it_cannot_refit(fitted):
    adata = fitted.copy()
    with pytest.raises(TypeError, match=r"\['random_state'\] are set by feature_stability"):
        sl.tl.feature_stability(adata, fit_kwargs={"random_state": 3})
    with pytest.raises(ValueError, match="threshold must be in"):
        sl.tl.feature_stability(adata, threshold=0)
    with pytest.raises(ValueError, match="consensus='sae' would replace the run it is made from"):
        sl.tl.feature_stability(adata, consensus="sae")
    with pytest.raises(ValueError, match="No seeds to refit with"):
        sl.tl.feature_stability(adata, seeds=[])
    with pytest.raises(KeyError, match=r"`adata.obs\['batch'\]` not found"):
        sl.tl.feature_stability(adata, groupby="batch")
    sl.tl.baseline_features(adata, use_rep="X_emb", method="pca")
    with pytest.raises(TypeError, match="is a baseline"):
        sl.tl.feature_stability(adata, sae_key="pca_baseline")
    adata.uns["sae"]["params"]["source"] = "encode"
    with pytest.raises(ValueError, match=r"was not trained by `sl\.tl\.fit_sae` here"):
        sl.tl.feature_stability(adata)

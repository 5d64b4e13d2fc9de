"""sl.tl.steer and the scvi-tools decode wrapper: planted genes move, only the feature direction moves."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import program_membership, toy_decoder, toy_with_sae
from scipy import sparse

import sclens as sl
from sclens.tl._steering._steer import steer


@pytest.fixture(scope="module")
def toy():
    return toy_with_sae(n_cells=400)


@pytest.fixture(scope="module")
def toy_decode(toy):
    """The toy generator's expression model: codes from the embedding, softmax over genes."""
    return toy_decoder(toy), program_membership(toy)


def test_planted_genes_move_up_others_within_noise(toy, toy_decode):
    decode, m = toy_decode
    feature = 2  # local program of type_1
    out = steer(toy, features=feature, cells={"cell_type": "type_0"}, decode=decode)
    n = out.n_obs // 2
    normal, pert = out.X[:n], out.X[n:]
    lfc = np.log2(pert / normal).mean(0)  # paired: same cell, same library
    planted = m[feature] > 0
    others = lfc[~planted]
    shift = np.median(others)  # common renormalisation of the softmax over genes
    assert (lfc[planted] - shift > 2.0).all()
    assert np.abs(others - shift).max() < 0.01
    assert out.uns["steer"]["params"]["decoder"] == "callable"


def test_only_the_feature_direction_moves(toy):
    out = steer(toy, features=9, cells={"cell_type": ["type_1", "type_2"]})
    target = toy.obsm["X_sae"][:, 9].toarray().max()
    assert out.uns["steer"]["features"].loc[9, "amount"] == pytest.approx(target)
    n = out.n_obs // 2
    sel = toy.obs["cell_type"].isin(["type_1", "type_2"]).to_numpy()
    assert n == sel.sum()
    x, xp = out.obsm["X_emb"][:n], out.obsm["X_emb"][n:]
    np.testing.assert_allclose(x, toy.obsm["X_emb"][sel], rtol=1e-6)
    z = toy.obsm["X_sae"][sel].toarray()
    w = toy.uns["sae"]["weights"]["W_dec"]
    np.testing.assert_allclose(xp - x, (target - z[:, 9])[:, None] * w[9][None, :], atol=1e-5)
    # reconstruction error of every cell is kept
    zp = out.obsm["X_sae"][n:].toarray()
    np.testing.assert_allclose(xp - zp @ w, x - z @ w, atol=1e-5)
    assert zp[:, 9] == pytest.approx(target)
    assert np.array_equal(np.delete(zp, 9, 1), np.delete(z, 9, 1))
    assert list(out.obs["condition"].cat.categories) == ["normal", "perturbed"]
    assert (out.obs["cell"].to_numpy()[:n] == out.obs["cell"].to_numpy()[n:]).all()
    assert out.n_vars == 0


def test_target_values(toy):
    col = toy.obsm["X_sae"][:, 3].toarray().ravel()
    ct = toy.obs["cell_type"].astype(str).to_numpy()
    assert steer(toy, features=3, value=2.5).uns["steer"]["features"]["amount"].iloc[0] == pytest.approx(2.5)
    p99 = np.percentile(col[col > 0], 99)
    assert steer(toy, features=3, value="p99").uns["steer"]["features"]["amount"].iloc[0] == pytest.approx(p99)
    out = steer(toy, features=3, cells={"cell_type": "type_0"}, value={"cell_type": "type_1"}, factor=1.5)
    assert out.uns["steer"]["features"]["amount"].iloc[0] == pytest.approx(1.5 * col[ct == "type_1"].mean(), rel=1e-6)
    mask = ct == "type_3"
    assert steer(toy, features=3, cells=mask).uns["steer"]["params"]["n_cells"] == mask.sum()
    # group values as an array / pandas Index / Categorical (e.g. `obs[col].unique()`), not only a list
    two = np.isin(ct, ["type_1", "type_3"]).sum()
    for vals in (np.array(["type_1", "type_3"]), pd.Index(["type_1", "type_3"]), {"type_1", "type_3"}):
        assert steer(toy, features=3, cells={"cell_type": vals}).uns["steer"]["params"]["n_cells"] == two
    uniq = toy.obs["cell_type"].unique()
    assert steer(toy, features=3, cells={"cell_type": uniq}).uns["steer"]["params"]["n_cells"] == toy.n_obs
    names = list(toy.obs_names[:7])
    assert steer(toy, features=3, cells=names).obs["cell"].tolist()[:7] == names


def test_wide_sae_codes_stay_sparse(toy):
    """Codes of the steered cells are never densified (400 cells x 50,000 features = 80 MB dense)."""
    import tracemalloc

    wide = toy.copy()
    n_extra = 50_000 - wide.obsm["X_sae"].shape[1]
    wide.obsm["X_sae"] = sparse.hstack([wide.obsm["X_sae"], sparse.csr_matrix((wide.n_obs, n_extra))], format="csr")
    w = wide.uns["sae"]["weights"]["W_dec"]
    wide.uns["sae"]["weights"] = {"W_dec": np.vstack([w, np.zeros((n_extra, w.shape[1]), np.float32)])}
    tracemalloc.start()
    try:
        out = steer(wide, features=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6
    codes = out.obsm["X_sae"]
    assert sparse.issparse(codes)
    assert codes.shape == (2 * wide.n_obs, 50_000)
    ref = toy.obsm["X_sae"].toarray()
    np.testing.assert_array_equal(codes[: wide.n_obs, :18].toarray(), ref)
    ref[:, 3] = ref[:, 3].max()
    np.testing.assert_allclose(codes[wide.n_obs :, :18].toarray(), ref)
    assert codes[:, 18:].nnz == 0


def test_h5ad_round_trip(toy, toy_decode, tmp_path):
    out = steer(toy, features=0, cells={"cell_type": "type_0"}, decode=toy_decode[0])
    out.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    np.testing.assert_allclose(back.X, out.X)
    for key in ("features", "baseline", "dose_response"):
        pd.testing.assert_frame_equal(back.uns["steer"][key], out.uns["steer"][key])
    assert back.uns["steer"]["params"] == out.uns["steer"]["params"]
    assert sparse.issparse(back.obsm["X_sae"])


def test_bad_input(toy, toy_decode):
    with pytest.raises(ValueError, match=r"feature 99 is out of range: this SAE has 18 features \(0..17\)"):
        steer(toy, features=99)
    with pytest.raises(ValueError, match="feature 17 is dead"):
        steer(toy, features=17)
    with pytest.raises(TypeError, match="features must be a feature number"):
        steer(toy, features="3")
    with pytest.raises(ValueError, match="selects no cell"):
        steer(toy, features=3, cells={"cell_type": "type_9"})
    with pytest.raises(ValueError, match=r"`value=\{'cell_type': 'type_9'\}` selects no cell"):
        steer(toy, features=3, value={"cell_type": "type_9"})
    with pytest.raises(KeyError, match=r"`adata.obs\['tissue'\]` not found"):
        steer(toy, features=3, cells={"tissue": "x"})
    with pytest.raises(ValueError, match="value must be 'max', a percentile"):
        steer(toy, features=3, value="mean")
    with pytest.raises(ValueError, match="decode returned shape"):
        steer(toy, features=3, decode=lambda e, c: e)
    with pytest.raises(ValueError, match="Pass either `model` or `decode`"):
        steer(toy, features=3, decode=toy_decode[0], model=object())
    with pytest.raises(TypeError, match=r"Unsupported model class object.*SCVI, SCANVI, LinearSCVI"):
        steer(toy, features=3, model=object())


# --- scvi-tools ------------------------------------------------------------------------------------


def _scvi_with_exact_sae(adata, **setup):
    """A tiny SCVI on ``adata`` and an exact "SAE" on its latent: features relu(z), relu(-z), decoder [I; -I]."""
    import scvi

    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata, layer="counts", **setup)
    model = scvi.model.SCVI(adata, n_latent=4, n_hidden=32, n_layers=1)
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False, logger=False, enable_checkpointing=False)
    z = model.get_latent_representation()
    adata.obsm["X_scVI"] = z
    act = np.hstack([np.maximum(z, 0), np.maximum(-z, 0)]).astype(np.float32)
    adata.obsm["X_sae"] = sparse.csr_matrix(act)
    eye = np.eye(4, dtype=np.float32)
    adata.uns["sae"]["params"]["use_rep"] = "X_scVI"
    adata.uns["sae"]["weights"] = {
        "W_enc": np.hstack([eye, -eye]),
        "b_enc": np.zeros(8, np.float32),
        "W_dec": np.vstack([eye, -eye]),
        "b_dec": np.zeros(4, np.float32),
    }
    del adata.uns["sae"]["features"]
    return adata, model


@pytest.fixture(scope="module")
def scvi_setup():
    return _scvi_with_exact_sae(toy_with_sae(n_cells=300, random_state=1))


def _mean_rsample(self, sample_shape=()):
    import torch

    return self.loc.expand(self._extended_shape(torch.Size(sample_shape)))


def test_decode_own_latent_reproduces_normalized_expression(scvi_setup, monkeypatch):
    import torch

    from sclens._scvi import decode_scvi, scvi_cell_inputs

    adata, model = scvi_setup
    idx = np.arange(0, adata.n_obs, 5)
    monkeypatch.setattr(torch.distributions.Normal, "rsample", _mean_rsample)  # z = posterior mean
    ref = model.get_normalized_expression(adata, indices=idx, library_size=1e4, return_numpy=True)
    monkeypatch.undo()
    model.module.train()  # the wrapper decodes in eval mode and restores the previous state
    inputs = scvi_cell_inputs(model, adata, idx)
    dec = decode_scvi(model, inputs["qz_mean"], inputs, library_size=1e4)
    assert model.module.training
    model.module.eval()
    np.testing.assert_allclose(inputs["qz_mean"], adata.obsm["X_scVI"][idx], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dec, ref, rtol=1e-4, atol=1e-4)
    # at the cell's own library size the predicted means sum to the observed counts
    mu = decode_scvi(model, inputs["qz_mean"], inputs)
    np.testing.assert_allclose(mu.sum(1), np.asarray(adata.layers["counts"][idx].sum(1)).ravel(), rtol=1e-3)


def test_steer_through_scvi(scvi_setup):
    adata, model = scvi_setup
    out = steer(adata, features=1, cells={"cell_type": "type_0"}, model=model)
    n = out.n_obs // 2
    lib = np.asarray(adata.layers["counts"][(adata.obs["cell_type"] == "type_0").to_numpy()].sum(1)).ravel()
    # same library size (and batch) for normal and perturbed
    np.testing.assert_allclose(out.X[:n].sum(1), lib, rtol=1e-3)
    np.testing.assert_allclose(out.X[n:].sum(1), lib, rtol=1e-3)
    assert not np.allclose(out.X[:n], out.X[n:])
    assert list(out.var_names) == list(adata.var_names)
    dz = out.obsm["X_scVI"][n:] - out.obsm["X_scVI"][:n]
    np.testing.assert_allclose(dz[:, [0, 2, 3]], 0, atol=1e-6)
    assert (dz[:, 1] >= -1e-6).all()


def test_steer_predicted_counts_feed_contrast(scvi_setup):
    """layers['counts'] holds rounded predicted means, which `sl.tl.contrast` accepts."""
    import sclens as sl

    adata, model = scvi_setup
    out = steer(adata, features=1, cells={"cell_type": "type_0"}, model=model)
    counts = out.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, np.rint(out.X))
    sl.tl.contrast(
        out,
        groupby="condition",
        groups="perturbed",
        reference="normal",
        layer="counts",
        gene_sets=adata.uns["toy"]["gene_sets"],
        min_log2fc=0.0,
        alpha=1.0,
    )
    de = out.uns["contrast"]["de"]
    n = out.n_obs // 2
    shift = np.log2((out.X[n:].mean(0) + 1e-3) / (out.X[:n].mean(0) + 1e-3))
    expressed = out.X.mean(0) > 1
    lfc = de["log2fc"].to_numpy()
    assert np.corrcoef(lfc[expressed], shift[expressed])[0, 1] > 0.9


def test_scvi_bad_model(scvi_setup):
    adata, model = scvi_setup
    sub = adata[:, :-1].copy()
    with pytest.raises(ValueError, match="The model's genes differ from the AnnData's: model has 300 genes, adata 299"):
        steer(sub, features=1, model=model)


def test_matches_fitted_sae_decoder():
    """With a real fitted SAE, x' - x equals sl.get.sae(adata).decode(z') - decode(z)."""
    import torch

    import sclens as sl

    adata = sl.datasets.toy(n_cells=300, random_state=4)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=4, n_epochs=5, batch_size=64, lr=3e-3)
    feature = int(np.argmax(np.diff(adata.obsm["X_sae"].tocsc().indptr)))
    out = steer(adata, features=feature, cells={"cell_type": "type_1"})
    n = out.n_obs // 2
    sae = sl.get.sae(adata)
    z, zp = (torch.as_tensor(out.obsm["X_sae"][s].toarray()) for s in (slice(0, n), slice(n, None)))
    with torch.no_grad():
        expected = (sae.decode(zp) - sae.decode(z)).numpy()
    np.testing.assert_allclose(out.obsm["X_emb"][n:] - out.obsm["X_emb"][:n], expected, atol=1e-4)


def test_decode_poisson_model_with_batch_and_covariates(monkeypatch):
    """Batch, categorical and continuous covariates reach the decoder; Poisson models decode too
    (their distribution has no ``.mu``: the wrapper used to raise AttributeError)."""
    import scvi
    import torch

    from sclens._scvi import decode_scvi, scvi_cell_inputs

    adata = toy_with_sae(n_cells=200, random_state=2)
    rng = np.random.default_rng(0)
    adata.obs["batch"] = rng.choice(["b0", "b1"], adata.n_obs)
    adata.obs["donor"] = rng.choice(["d0", "d1", "d2"], adata.n_obs)
    adata.obs["pct_mito"] = rng.normal(size=adata.n_obs).astype(np.float32)
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(
        adata,
        layer="counts",
        batch_key="batch",
        categorical_covariate_keys=["donor"],
        continuous_covariate_keys=["pct_mito"],
    )
    model = scvi.model.SCVI(adata, n_latent=3, n_hidden=16, n_layers=1, gene_likelihood="poisson")
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False, logger=False, enable_checkpointing=False)
    idx = np.arange(0, adata.n_obs, 4)
    monkeypatch.setattr(torch.distributions.Normal, "rsample", _mean_rsample)
    ref = model.get_normalized_expression(adata, indices=idx, library_size=1e4, return_numpy=True)
    monkeypatch.undo()
    inputs = scvi_cell_inputs(model, adata, idx)
    assert inputs["cat_covs"].shape == (idx.size, 1)
    assert inputs["cont_covs"].shape == (idx.size, 1)
    np.testing.assert_array_equal(inputs["batch_index"].ravel(), adata.obs["batch"].iloc[idx].map({"b0": 0, "b1": 1}))
    dec = decode_scvi(model, inputs["qz_mean"], inputs, library_size=1e4)
    np.testing.assert_allclose(dec, ref, rtol=1e-4, atol=1e-4)
    # another batch gives another prediction: the batch index is really used
    other = dict(inputs, batch_index=1 - inputs["batch_index"])
    assert not np.allclose(decode_scvi(model, inputs["qz_mean"], other, library_size=1e4), dec)
    mu = decode_scvi(model, inputs["qz_mean"], inputs)
    np.testing.assert_allclose(mu.sum(1), np.asarray(adata.layers["counts"][idx].sum(1)).ravel(), rtol=1e-3)


# --- several features, modes, renamed parameters ----------------------------------------------------


def test_several_features_with_per_feature_modes(toy):
    ct = toy.obs["cell_type"].astype(str).to_numpy()
    sel = ct == "type_0"
    z = toy.obsm["X_sae"][sel].toarray()
    col2 = toy.obsm["X_sae"][:, 2].toarray().ravel()
    out = steer(
        toy,
        features=[2, 3, 9],
        cells={"cell_type": "type_0"},
        mode=["set", "add", "knockout"],
        value=[{"cell_type": "type_1"}, 0.5, "max"],
        factor=[1.5, 1.0, 1.0],
    )
    n = out.n_obs // 2
    zp = out.obsm["X_sae"][n:].toarray()
    np.testing.assert_allclose(zp[:, 2], 1.5 * col2[ct == "type_1"].mean(), rtol=1e-6)
    np.testing.assert_allclose(zp[:, 3], z[:, 3] + 0.5, rtol=1e-6)
    assert (zp[:, 9] == 0).all()
    assert (z[:, 9] > 0).any()
    np.testing.assert_array_equal(np.delete(zp, [2, 3, 9], 1), np.delete(z, [2, 3, 9], 1))
    w = toy.uns["sae"]["weights"]["W_dec"]
    x, xp = out.obsm["X_emb"][:n], out.obsm["X_emb"][n:]
    np.testing.assert_allclose(xp - x, (zp - z) @ w, atol=1e-5)
    info = out.uns["steer"]["features"]
    assert list(info.index) == [2, 3, 9]
    assert list(info["mode"]) == ["set", "add", "knockout"]
    np.testing.assert_allclose(info["amount"], [1.5 * col2[ct == "type_1"].mean(), 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(info["mean_change"], (zp - z)[:, [2, 3, 9]].mean(0), rtol=1e-5)


def test_add_clips_at_zero_and_knockout_only_touches_active_cells(toy):
    z = toy.obsm["X_sae"][:, 4].toarray().ravel()
    out = steer(toy, features=4, mode="add", value=-0.5)
    n = out.n_obs // 2
    np.testing.assert_allclose(out.obsm["X_sae"][n:, 4].toarray().ravel(), np.maximum(z - 0.5, 0), rtol=1e-6)
    ko = steer(toy, features=4, mode="knockout")
    moved = np.linalg.norm(ko.obsm["X_emb"][n:] - ko.obsm["X_emb"][:n], axis=1) > 1e-6
    np.testing.assert_array_equal(moved, z > 0)
    assert ko.uns["steer"]["features"]["amount"].iloc[0] == 0.0


def test_several_features_bad_input(toy):
    with pytest.raises(ValueError, match="mode has 1 entries but 2 feature"):
        steer(toy, features=[2, 3], mode=["set"])
    with pytest.raises(ValueError, match="features has duplicates"):
        steer(toy, features=[2, 2])
    with pytest.raises(ValueError, match="mode must be one of"):
        steer(toy, features=2, mode="double")
    with pytest.raises(ValueError, match="features is empty"):
        steer(toy, features=[])
    before = {k: v.copy() for k, v in toy.obsm.items()}
    with pytest.raises(ValueError, match="feature 17 is dead"):
        steer(toy, features=[3, 17])
    for k, v in before.items():  # a failed call leaves the AnnData as it was
        np.testing.assert_array_equal(
            toy.obsm[k].toarray() if sparse.issparse(v) else toy.obsm[k], v.toarray() if sparse.issparse(v) else v
        )


def test_key_added_and_run_id(toy):
    adata = toy.copy()
    adata.uns["sae"]["run_id"] = "abc123"
    out = steer(adata, features=3, key_added="ko3", mode="knockout")
    assert "steer" not in out.uns
    assert out.uns["ko3"]["params"]["sae_run_id"] == "abc123"  # recorded, not checked: `out` holds no SAE run
    assert set(out.uns["ko3"]) == {"features", "baseline", "dose_response", "params"}  # tables + params, no flat keys
    assert {"n_random", "random_state", "dose_metric", "displacement_pvalue"} <= set(out.uns["ko3"]["params"])
    assert sl.pl.steering(out, steer_key="ko3", return_fig=True) is not None
    no_id = steer(toy, features=3).uns["steer"]["params"]
    assert "sae_run_id" not in no_id  # no id: nothing recorded (h5ad has no None)
    old = out.copy()  # the flat record of earlier versions: refused with the call that rewrites it
    old.uns["ko3"] = {"features": np.array([3]), "mode": np.array(["knockout"]), "amount": np.zeros(1)}
    with pytest.raises(ValueError, match=r"Re-run `sl.tl.steer\(adata, features=..., key_added='ko3'\)`"):
        sl.pl.steering(old, steer_key="ko3")


# --- steer_towards on the toy -----------------------------------------------------------------------


def test_steer_towards_toy(toy, toy_decode, tmp_path):
    from sclens.tl._steering._steer_towards import steer_towards

    decode, m = toy_decode
    # all 12 features the greedy choice takes: no other live feature is left to draw a random baseline from
    with pytest.raises(ValueError, match=r"n_random=50: only 0 other live feature\(s\) to draw random sets of 12"):
        steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"})
    out = steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, decode=decode, n_random=0)
    rec = out.uns["steer_towards"]
    info = rec["params"]
    feats = list(rec["features"].index)
    # the first choices switch type_0's programs (0, 1) off and type_1's first program (2) on
    assert set(feats[:3]) == {0, 1, 2}
    assert 3 in feats
    change = dict(zip(feats, rec["features"]["mean_change"], strict=True))
    assert change[0] < 0
    assert change[1] < 0
    assert change[2] > 0
    assert change[3] > 0
    assert info["distance_after"] < 0.1 * info["distance_before"]
    assert info["distance_ratio"] == pytest.approx(info["distance_after"] / info["distance_before"])
    assert "frac_closer" not in info  # retired: 1.0 for random features too
    assert set(rec) == {"features", "objective", "target_centroid", "baseline", "dose_response", "params"}
    # no random draw: the baseline has the chosen row only and no p-value
    assert list(rec["baseline"].index) == ["chosen"]
    assert np.isnan(info["distance_ratio_pvalue"])
    assert np.isnan(info["frac_closer_than_random"])
    type1_genes = toy.var_names[(m[2] + m[3]) > 0]
    assert np.isin(info["markers"], type1_genes).all()
    assert info["markers_up"] == 1.0
    assert info["markers_enriched"]
    assert "de" in out.uns["contrast"]
    out.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad")
    assert back.uns["steer_towards"]["params"]["distance_ratio"] == info["distance_ratio"]
    pd.testing.assert_frame_equal(back.uns["steer_towards"]["baseline"], rec["baseline"])
    np.testing.assert_array_equal(back.uns["steer_towards"]["params"]["markers"], info["markers"])
    np.testing.assert_array_equal(back.uns["steer_towards"]["objective"], rec["objective"])
    # explicit markers; one feature only
    one = steer_towards(
        toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, decode=decode,
        markers=list(type1_genes[:3]), max_features=1, n_random=5,
    )  # fmt: skip
    assert len(one.uns["steer_towards"]["features"]) == 1
    assert list(one.uns["steer_towards"]["params"]["markers"]) == list(type1_genes[:3])
    # without a decoder: embedding metrics only
    emb_only = steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, n_random=0)
    assert "markers" not in emb_only.uns["steer_towards"]["params"]
    assert list(emb_only.uns["steer_towards"]["baseline"].columns) == ["features", "distance_ratio"]
    assert emb_only.n_vars == 0


def test_steer_towards_bad_input(toy, toy_decode):
    from sclens.tl._steering._steer_towards import steer_towards

    with pytest.raises(ValueError, match="source and target share 89 cell"):
        steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": ["type_0", "type_1"]})
    with pytest.raises(ValueError, match="max_features must be a positive integer"):
        steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, max_features=0)
    with pytest.raises(ValueError, match="`target=\\{'cell_type': 'type_9'\\}` selects no cell"):
        steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_9"})
    with pytest.raises(ValueError, match=r"markers must be genes of `adata\.var_names`; not found: \['CD8A'\]"):
        steer_towards(
            toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, decode=toy_decode[0], markers=["CD8A"]
        )


def test_steering_through_scvi_with_batch_covariate(monkeypatch):
    """Several features and steer_towards through an SCVI with a batch covariate: each cell keeps its batch."""
    from sclens.tl._steering._steer_towards import steer_towards

    adata = toy_with_sae(n_cells=240, random_state=5)
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2, "b1", "b0")
    adata, model = _scvi_with_exact_sae(adata, batch_key="batch")
    sel = (adata.obs["cell_type"] == "type_0").to_numpy()
    lib = np.asarray(adata.layers["counts"][sel].sum(1)).ravel()
    out = steer(adata, features=[0, 5], mode=["add", "knockout"], value=[1.0, 0], cells=sel, model=model)
    n = out.n_obs // 2
    np.testing.assert_allclose(out.X[n:].sum(1), lib, rtol=1e-3)
    assert not np.allclose(out.X[:n], out.X[n:])
    # the decoder saw each cell's own batch: the normal state is scvi-tools' own prediction (z = posterior
    # mean, each cell's batch) at the cell's library size
    import torch

    monkeypatch.setattr(torch.distributions.Normal, "rsample", _mean_rsample)
    ref = model.get_normalized_expression(adata, indices=np.flatnonzero(sel), library_size=1, return_numpy=True)
    monkeypatch.undo()
    np.testing.assert_allclose(out.X[:n], ref * lib[:, None], rtol=1e-4)
    towards = steer_towards(
        adata, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, model=model, n_random=0
    )
    info = towards.uns["steer_towards"]["params"]
    assert info["distance_ratio"] < 0.1  # measured 0.02: the exact SAE spans the latent
    assert info["decoder"] == "scvi"
    assert towards.layers["counts"].shape == (2 * sel.sum(), adata.n_vars)

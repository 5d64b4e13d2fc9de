import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse

import sclens as sl

FAST = {"n_features": 64, "k": 4, "n_epochs": 2, "batch_size": 128, "lr": 1e-2}


@pytest.fixture(scope="module")
def toy():
    return sl.datasets.toy(n_cells=400, n_genes=200, random_state=0)


@pytest.fixture(scope="module")
def fitted(toy):
    adata = toy.copy()
    sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)
    return adata


def _snapshot(adata):
    return (sorted(adata.obsm.keys()), sorted(adata.uns.keys()), adata.shape)


def test_storage_contract(fitted):
    z = fitted.obsm["X_sae"]
    assert sparse.isspmatrix_csr(z) or isinstance(z, sparse.csr_array)
    assert z.dtype == np.float32 and z.shape == (fitted.n_obs, 64) and z.min() >= 0
    np.testing.assert_allclose((z > 0).sum(1).mean(), 4.0)
    run = fitted.uns["sae"]
    p = run["params"]
    assert (p["architecture"], p["n_features"], p["use_rep"], p["input_dim"], p["k"]) == ("topk", 64, "X_emb", 16, 4)
    assert {"lr", "n_epochs", "batch_size", "random_state", "l1_weight"} <= set(p)
    assert not any(v is None for v in p.values())
    m = run["metrics"]
    assert 0 < m["fvu"] < 1 and m["l0"] == pytest.approx(4.0) and m["n_live"] == round(64 * (1 - m["dead_fraction"]))
    assert len(m["train_loss"]) == len(m["train_fvu"]) == len(m["val_fvu"]) == 2
    w = run["weights"]
    assert w["W_enc"].shape == (16, 64) and w["W_dec"].shape == (64, 16)
    assert w["b_enc"].shape == (64,) and w["b_dec"].shape == (16,)
    f = run["features"]
    assert list(f.index[:3]) == ["0", "1", "2"] and len(f) == 64
    np.testing.assert_allclose(f["frequency"].to_numpy(), np.asarray((z > 0).mean(0)).ravel())
    assert set(f["kind"]) <= {"live", "dead"} and (f["kind"] == "dead").sum() == 64 - m["n_live"]


def test_h5ad_roundtrip_rebuilds_identical_model(fitted, tmp_path):
    fitted.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    sae = sl.get.sae(back)
    assert not sae.training
    z = sae.encode(torch.from_numpy(np.asarray(back.obsm["X_emb"], dtype=np.float32))).detach().numpy()
    np.testing.assert_array_equal(z, fitted.obsm["X_sae"].toarray())
    np.testing.assert_array_equal(back.obsm["X_sae"].toarray(), fitted.obsm["X_sae"].toarray())
    sl.tl.encode(back, key="sae")
    np.testing.assert_array_equal(back.obsm["X_sae"].toarray(), fitted.obsm["X_sae"].toarray())
    assert back.uns["sae"]["params"]["source"] == "encode"
    assert len(back.uns["sae"]["metrics"]["train_loss"]) == 2  # curves kept


def test_same_seed_identical_activations(toy):
    a, b, c = (sl.tl.fit_sae(toy, use_rep="X_emb", random_state=s, copy=True, **FAST) for s in (1, 1, 2))
    assert (a.obsm["X_sae"] != b.obsm["X_sae"]).nnz == 0
    assert (a.obsm["X_sae"] != c.obsm["X_sae"]).nnz > 0
    assert "X_sae" not in toy.obsm  # copy=True leaves the input alone


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_int_and_float64_embeddings(toy, dtype):
    adata = toy.copy()
    adata.obsm["X_int"] = np.round(adata.obsm["X_emb"] * 10).astype(dtype)
    sl.tl.fit_sae(adata, use_rep="X_int", key_added="sae_int", **FAST)
    assert adata.obsm["X_sae_int"].dtype == np.float32 and "sae_int" in adata.uns


def test_encode_query_with_reference(fitted, toy):
    query = toy[:50].copy()
    sl.tl.encode(query, sae=fitted)
    np.testing.assert_array_equal(query.obsm["X_sae"].toarray(), fitted.obsm["X_sae"][:50].toarray())
    query2 = toy[:50].copy()
    sl.tl.encode(query2, sae=sl.get.sae(fitted), use_rep="X_emb")
    np.testing.assert_array_equal(query2.obsm["X_sae"].toarray(), query.obsm["X_sae"].toarray())
    # a bare model re-encodes cells that already hold a run under `key`: its use_rep is reused
    sl.tl.encode(query2, sae=sl.get.sae(fitted))
    np.testing.assert_array_equal(query2.obsm["X_sae"].toarray(), query.obsm["X_sae"].toarray())


def test_save_dir_then_encode(fitted, toy, tmp_path):
    from sclens.sae import save_sae

    save_sae(sl.get.sae(fitted), tmp_path / "sae")
    query = toy[:30].copy()
    sl.tl.encode(query, sae=str(tmp_path / "sae"), use_rep="X_emb")
    np.testing.assert_array_equal(query.obsm["X_sae"].toarray(), fitted.obsm["X_sae"][:30].toarray())


def test_mudata_modality(toy):
    import warnings

    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # mudata's own pull_on_update notice
        mdata = md.MuData({"rna": toy.copy()})
    sl.tl.fit_sae(mdata, use_rep="rna:X_emb", **FAST)
    assert mdata.obsm["X_sae"].shape == (toy.n_obs, 64)
    assert mdata.uns["sae"]["params"]["use_rep"] == "rna:X_emb"
    assert sl.get.sae(mdata).input_dim == 16


def _nonfinite(adata, value):
    x = adata.obsm["X_emb"].copy()
    x[3, 2] = value
    return _bad(adata, "X_emb", x)


def _bad(adata, key, value):
    adata = adata.copy()
    adata.obsm[key] = value
    return adata


@pytest.mark.parametrize(
    ("make", "kwargs", "err", "match"),
    [
        (lambda a: a, {"use_rep": "X_scVI"}, KeyError, r"`adata.obsm\['X_scVI'\]` not found; available keys: \[.*'X_emb'"),
        (lambda a: _nonfinite(a, np.nan), {}, ValueError, r"NaN or infinite values in 1 cell"),
        (lambda a: _nonfinite(a, -np.inf), {}, ValueError, r"NaN or infinite values in 1 cell"),
        (lambda a: a[:1].copy(), {}, ValueError, r"has 1 row\(s\); an SAE needs at least 2 cells"),
        (lambda a: a[:0].copy(), {}, ValueError, r"has 0 row\(s\)"),
        (lambda a: a, {"k": 64}, ValueError, r"k must satisfy 1 <= k < n_features"),
        (lambda a: a, {"n_features": 0}, ValueError, r"n_features must be >= 1"),
        (lambda a: a, {"architecture": "jumprelu"}, ValueError, r"Unknown SAE architecture 'jumprelu'; choose one of"),
    ],
)
def test_bad_input_leaves_adata_unchanged(toy, make, kwargs, err, match):
    adata = make(toy)
    before = _snapshot(adata)
    kw = {**FAST, "use_rep": "X_emb", **kwargs}
    with pytest.raises(err, match=match):
        sl.tl.fit_sae(adata, **kw)
    assert _snapshot(adata) == before


def test_encode_other_width_raises(fitted, toy):
    query = toy[:20].copy()
    query.obsm["X_wide"] = np.zeros((20, 20), dtype=np.float32)
    before = _snapshot(query)
    with pytest.raises(ValueError, match=r"trained on 16-dimensional inputs but `obsm\['X_wide'\]` has 20 columns"):
        sl.tl.encode(query, sae=fitted, use_rep="X_wide")
    assert _snapshot(query) == before
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]` not found.*Run `sl.tl.fit_sae"):
        sl.tl.encode(query)

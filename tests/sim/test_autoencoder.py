from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import sclens as sl


@pytest.fixture(scope="module")
def ae_data(small_large):
    adata = small_large.copy()
    sl.sim.fit_autoencoder(adata, n_latent=20, hidden=(128,), n_epochs=20, random_state=0)
    return adata


def test_autoencoder_embedding_and_validation_loss(ae_data):
    emb = ae_data.obsm["X_ae"]
    assert emb.shape == (2000, 20)
    assert emb.dtype == np.float32
    m = ae_data.uns["ae"]["metrics"]
    assert m["val_loss"].shape == (20,)
    assert m["val_loss"][-1] < 0.2 * m["val_loss"][0]
    assert m["final_val_loss"] == m["val_loss"][-1]
    assert ae_data.uns["ae"]["validation"].sum() == 200
    assert ae_data.uns["ae"]["params"]["loss"] == "log1p"


def test_autoencoder_is_deterministic(small_large):
    kw = {"n_latent": 4, "hidden": (16,), "n_epochs": 2, "random_state": 5}
    a = sl.sim.fit_autoencoder(small_large, copy=True, **kw)
    b = sl.sim.fit_autoencoder(small_large, copy=True, **kw)
    np.testing.assert_array_equal(a.obsm["X_ae"], b.obsm["X_ae"])
    assert "X_ae" not in small_large.obsm  # copy=True leaves the input alone


def test_superposition_ordering_of_the_paper(ae_data):
    """X'' (directly upstream of Y) is recovered best, then A, B, X', and X worst."""
    r2 = sl.sim.superposition_fit(ae_data, use_rep="X_ae").groupby("family", observed=True)["r2"].mean()
    assert r2["X''"] > 0.8
    assert r2["X''"] - r2["X"] > 0.6
    assert r2["X''"] > r2["A"] > r2["B"] > r2["X'"] > r2["X"]


def test_nb_loss_and_h5ad(tmp_path):
    adata = sl.sim.simulate(preset="large", n_cells=300, n_genes=60, n_programs=6, likelihood="nb")
    sl.sim.fit_autoencoder(adata, n_latent=3, hidden=(16,), n_epochs=3, loss="nb", key_added="ae_nb")
    val = adata.uns["ae_nb"]["metrics"]["val_loss"]
    assert np.isfinite(val).all()
    assert val[-1] < val[0]
    adata.write_h5ad(tmp_path / "ae.h5ad")
    back = ad.read_h5ad(tmp_path / "ae.h5ad")
    np.testing.assert_array_equal(back.obsm["X_ae_nb"], adata.obsm["X_ae_nb"])
    np.testing.assert_array_equal(back.uns["ae_nb"]["metrics"]["val_loss"], val)


def test_autoencoder_errors(small_large):
    with pytest.raises(ValueError, match="loss must be one of"):
        sl.sim.fit_autoencoder(small_large, loss="mse")
    with pytest.raises(KeyError, match=r"`adata.layers\['raw'\]` not found"):
        sl.sim.fit_autoencoder(small_large, layer="raw")
    with pytest.raises(TypeError, match="Expected an AnnData"):
        sl.sim.fit_autoencoder(np.zeros((3, 3)))


def test_small_preset_with_the_paper_5_4_5_autoencoder():
    adata = sl.sim.simulate(preset="small", n_cells=3000, random_state=0)
    sl.sim.fit_autoencoder(adata, n_latent=4, hidden=(), n_epochs=10, lr=1e-2, random_state=0)
    assert adata.obsm["X_ae"].shape == (3000, 4)
    r2 = sl.sim.superposition_fit(adata, use_rep="X_ae")
    mean = r2.groupby("family", observed=True)["r2"].mean()
    assert mean["X''"] > 0.85
    assert mean["X''"] > mean["X"] + 0.4
    assert r2.loc[r2["family"] == "B", "r2"].isna().all()  # no batch effect in the small preset

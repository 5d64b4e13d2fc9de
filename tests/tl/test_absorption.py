"""Feature absorption: exact shares on planted activations, a too-sparse SAE absorbs and a k=2 one does not."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl

PARENT = {"A1": "A", "A2": "A", "B1": "B", "B2": "B"}


def _hierarchy(n_per: int = 100) -> ad.AnnData:
    fine = np.repeat(list(PARENT), n_per)
    obs = pd.DataFrame({"fine": pd.Categorical(fine), "coarse": pd.Categorical([PARENT[f] for f in fine])},
                       index=[f"c{i}" for i in range(fine.size)])  # fmt: skip
    return ad.AnnData(obs=obs)


def test_planted_absorption_is_counted_exactly():
    adata = _hierarchy()
    n = adata.n_obs
    fine = adata.obs["fine"].to_numpy()
    rng = np.random.default_rng(0)
    act = np.zeros((n, 4), dtype=np.float32)
    a2 = np.flatnonzero(fine == "A2")
    absorbed = a2[:40]  # in 40 of the 100 A2 cells the A feature is silent and the A2 feature fires instead
    act[np.isin(fine, ["A1", "A2"]), 0] = rng.uniform(1, 2, size=200)
    act[absorbed, 0] = 0.0
    act[np.flatnonzero(fine == "A1")[:10], 0] = 0.0  # silent with nothing firing instead: not absorbed
    act[a2, 1] = rng.uniform(1, 2, size=100)
    act[np.isin(fine, ["B1", "B2"]), 2] = rng.uniform(1, 2, size=200)
    act[rng.random(n) < 0.3, 3] = 1.0  # noise feature
    adata.obsm["X_sae"] = sparse.csr_matrix(act)
    adata.uns["sae"] = {"params": {"n_features": 4}, "run_id": "r1"}
    sl.tl.feature_absorption(adata, fine="fine", coarse="coarse")
    res = adata.uns["sae"]["absorption"]["results"].set_index("fine")
    assert list(res["coarse_feature"]) == [0, 0, 2, 2]
    assert res.loc["A2", "absorption_fraction"] == pytest.approx(0.4)
    assert res.loc["A2", "silent_fraction"] == pytest.approx(0.4)
    assert res.loc["A2", "absorbing_features"] == "1"
    assert res.loc[["A1", "B1", "B2"], "absorption_fraction"].eq(0).all()
    assert res.loc["A1", "silent_fraction"] == pytest.approx(0.1)
    params = adata.uns["sae"]["absorption"]["params"]
    assert params["mean_absorption"] == pytest.approx(40 / 400)
    assert params["sae_run_id"] == "r1"
    sl.tl.feature_absorption(adata, fine="fine", coarse=PARENT, key_added="by_mapping")
    pd.testing.assert_frame_equal(adata.uns["sae"]["by_mapping"]["results"], adata.uns["sae"]["absorption"]["results"])
    assert adata.uns["sae"]["by_mapping"]["params"]["coarse"] == "mapping"


@pytest.fixture(scope="module")
def embedded():
    """Cells = coarse direction + subtype direction (random amplitudes, orthogonal directions)."""
    rng = np.random.default_rng(0)
    adata = _hierarchy(150)
    dirs = np.linalg.qr(rng.normal(size=(16, 16)))[0][:6]
    which = {"A": 0, "B": 1, "A1": 2, "A2": 3, "B1": 4, "B2": 5}
    fine = adata.obs["fine"].astype(str).to_numpy()
    amp = rng.uniform(0.5, 1.5, size=(fine.size, 2))
    x = amp[:, :1] * dirs[[which[PARENT[f]] for f in fine]] + amp[:, 1:] * dirs[[which[f] for f in fine]]
    adata.obsm["X_emb"] = (x + 0.02 * rng.normal(size=x.shape)).astype(np.float32)
    return adata


@pytest.mark.parametrize(("k", "absorbs"), [(1, True), (2, False)])
def test_an_sae_with_one_feature_per_cell_absorbs_the_coarse_type(embedded, one_thread, k, absorbs):
    adata = embedded.copy()
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=6, k=k, n_epochs=80, batch_size=64, lr=3e-3, random_state=0)
    sl.tl.feature_absorption(adata, fine="fine", coarse="coarse")
    mean = adata.uns["sae"]["absorption"]["params"]["mean_absorption"]
    if absorbs:  # k=1: one feature per cell must carry "coarse + subtype", so one subtype loses the coarse feature
        assert mean >= 0.3
    else:  # k=2: a coarse and a subtype feature per cell
        assert mean <= 0.05


def test_absorption_survives_h5ad_and_refuses_bad_hierarchies(embedded, tmp_path):
    adata = embedded.copy()
    adata.obsm["X_sae"] = sparse.csr_matrix(np.abs(adata.obsm["X_emb"][:, :6]))
    adata.uns["sae"] = {"params": {"n_features": 6}}
    sl.tl.feature_absorption(adata, fine="fine", coarse="coarse")
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["sae"]["absorption"]
    pd.testing.assert_frame_equal(back["results"], adata.uns["sae"]["absorption"]["results"])
    with pytest.raises(ValueError, match=r"coarse mapping lacks fine categories \['B2'\]"):
        sl.tl.feature_absorption(adata, fine="fine", coarse={"A1": "A", "A2": "A", "B1": "B"})
    adata.obs["mixed"] = adata.obs["coarse"].astype(str)
    adata.obs.iloc[0, adata.obs.columns.get_loc("mixed")] = "B"
    with pytest.raises(ValueError, match=r"Fine category 'A1' of `obs\['fine'\]` lies in several"):
        sl.tl.feature_absorption(adata, fine="fine", coarse="mixed")
    with pytest.raises(ValueError, match="No coarse type has two or more fine subtypes"):
        sl.tl.feature_absorption(adata, fine="fine", coarse={f: f for f in PARENT})
    with pytest.raises(ValueError, match="fine and coarse are the same column"):
        sl.tl.feature_absorption(adata, fine="fine", coarse="fine")
    with pytest.raises(ValueError, match=r"min_auroc must be in \[0.5, 1\)"):
        sl.tl.feature_absorption(adata, fine="fine", coarse="coarse", min_auroc=1.0)

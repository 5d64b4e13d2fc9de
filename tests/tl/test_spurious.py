"""Spurious-correlation removal: ablating a planted batch feature removes the batch, random ablations do not."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import toy_sae
from scipy import sparse

import sclens as sl


@pytest.fixture(scope="module")
def removed():
    """Planted program codes + one feature (16) that fires only in the cells of batch b1, of every type."""
    adata = toy_sae(n_cells=1000, random_state=0)
    rng = np.random.default_rng(0)
    batch = rng.choice(["b0", "b1"], adata.n_obs)
    adata.obs["batch"] = pd.Categorical(batch)
    planted = np.where(batch == "b1", rng.gamma(2.0, 1.0, adata.n_obs), 0.0)[:, None]
    adata.obsm["X_sae"] = sparse.hstack([adata.obsm["X_sae"], sparse.csr_matrix(planted)]).tocsr().astype(np.float32)
    adata.uns["sae"]["run_id"] = "r1"
    sl.tl.spurious_removal(adata, groupby="cell_type", technical="batch", n_features=1, n_random=10)
    return adata


def test_the_planted_batch_feature_is_found_and_its_ablation_removes_the_batch(removed):
    res = removed.uns["sae"]["spurious"]
    params = res["params"]
    assert list(params["features"]) == [16]  # the highest batch AUROC
    table = res["results"].set_index("ablation")
    assert table.loc["none", "technical_accuracy"] >= 0.85  # the batch is readable from the features ...
    assert table.loc["chosen", "technical_accuracy"] == pytest.approx(0.5, abs=0.03)  # ... and gone without it
    assert params["technical_drop"] > 0.3
    assert params["random_technical_drop"] < 0.05  # one random program feature carries no batch
    assert params["pvalue"] == pytest.approx(1 / 11)  # no random draw comes close
    assert abs(params["groupby_drop"]) < 0.02  # the cell types are kept
    assert params["sae_run_id"] == "r1"
    assert len(table) == 12
    assert (table.loc[[f"random_{i}" for i in range(10)], "n_ablated"] == 1).all()


def test_spurious_survives_h5ad_and_refuses_bad_input(removed, tmp_path):
    removed.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad").uns["sae"]["spurious"]
    pd.testing.assert_frame_equal(back["results"], removed.uns["sae"]["spurious"]["results"])
    adata = removed.copy()
    with pytest.raises(ValueError, match="groupby and technical are the same column"):
        sl.tl.spurious_removal(adata, groupby="batch", technical="batch")
    with pytest.raises(ValueError, match=r"Ablate between 1 and 8 features"):
        sl.tl.spurious_removal(adata, groupby="cell_type", technical="batch", features=list(range(10)))

"""Simulate -> autoencoder -> SAE (sl.tl.fit_sae) -> recovery, connectivity and sweep.

The paper's large preset (40 cell types, mask density 0.3) needs ~100,000 cells and large SAEs
for X'' to separate into single features; at test scale we use a sparser per-cell mask
(``n_cell_types=0``, ``mask_density=0.1``, ~2 programs active per cell) where a small TopK SAE
recovers X'' within seconds. ``benchmarks/simulation.py`` runs the paper's own setting.
"""

from __future__ import annotations

import numpy as np
import pytest

import sclens as sl


@pytest.fixture(scope="module")
def trained():
    adata = sl.sim.simulate(
        preset="large", n_cells=3000, n_genes=500, n_programs=20, n_cell_types=0, mask_density=0.1, random_state=0
    )
    sl.sim.fit_autoencoder(adata, n_latent=20, hidden=(128,), n_epochs=30, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_ae", n_features=40, architecture="topk", k=3, lr=1e-3, n_epochs=100, batch_size=128)
    return adata


def test_sae_recovers_most_x2_variables_and_not_x(trained):
    df = sl.sim.recovery(trained, targets=["X''", "X"], n_components=20, threshold=0.9)
    sae = df[df["method"] == "sae"].set_index("family")
    assert sae.loc["X''", "median_best_r"] > 0.88
    assert sae.loc["X''", "frac_recovered"] >= 0.5
    assert sae.loc["X", "mean_best_r"] < 0.3
    assert sae.loc["X''", "l0"] <= 3.0 + 1e-6
    # the baselines are reported on the same cells next to the SAE
    assert set(df["method"]) == {"sae", "pca", "ica", "svd"}
    assert df["n_cells"].nunique() == 1
    # with independent per-cell masks X'' are independent sources of Y, which ICA unmixes
    ica = df[df["method"] == "ica"].set_index("family")
    assert ica.loc["X''", "mean_best_r"] > 0.95


def test_sae_connectivity_beats_shuffled_m(trained):
    df = sl.sim.connectivity_recovery(trained).set_index("percentile")
    assert (df["recall"] > df["recall_shuffled"] + 0.15).all()
    assert df.loc[70, "recall"] > 0.8
    assert df.loc[70, "frac_significant"] > 0.5


def test_sweep_and_plot(trained):
    import matplotlib

    matplotlib.use("Agg")
    grid = {"architecture": ["topk"], "k": [2, 4]}
    obsm_before = set(trained.obsm)
    df = sl.sim.sweep(trained, use_rep="X_ae", grid=grid, n_features=40, n_epochs=15, batch_size=128, lr=1e-3)
    assert len(df) == 4  # 2 settings x 2 families
    for col in ("architecture", "k", "fvu", "l0", "dead_fraction", "n_live", "family", "mean_best_r"):
        assert col in df.columns
    l0 = df.drop_duplicates("k").set_index("k")["l0"]
    np.testing.assert_allclose(l0.to_numpy(), [2.0, 4.0], atol=0.3)
    assert set(trained.obsm) == obsm_before  # the sweep trains on a light copy
    assert trained.uns["sae"]["params"]["k"] == 3
    fig = sl.pl.sweep(df, x="l0", y="mean_best_r", hue="k", return_fig=True)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "l0"
    assert len(ax.collections) == 2
    with pytest.raises(KeyError, match="Columns"):
        sl.pl.sweep(df, x="nope", show=False)

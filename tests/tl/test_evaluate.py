"""The scorecard: it repeats the tools' numbers, survives h5ad, writes nothing on failure, is drawn and compared."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import toy_sae

import sclens as sl

LINEAGE = {"type_0": "L0", "type_1": "L0", "type_2": "L1", "type_3": "L1"}


@pytest.fixture(scope="module")
def scored():
    """Planted codes as the SAE (feature p = program p), donors at random, two lineages of two types."""
    adata = toy_sae(n_cells=800, random_state=0)
    adata.uns["sae"]["run_id"] = "run-1"
    rng = np.random.default_rng(0)
    adata.obs["donor"] = pd.Categorical(rng.choice(["d0", "d1", "d2", "d3"], adata.n_obs))
    sl.tl.evaluate(adata, groupby="cell_type", split_by="donor", technical="donor", coarse=LINEAGE, k=(1, 2))
    return adata


def test_scorecard_repeats_the_tools(scored):
    run = scored.uns["sae"]
    card = run["evaluation"]["scorecard"].set_index("metric")
    summary = run["probing"]["summary"].set_index(["method", "k"])["balanced_accuracy"]
    assert card.loc["probing_k2", "value"] == summary[("sae", 2)]
    best = summary.drop("sae", level="method").xs(2, level="k")
    assert card.loc["probing_k2", "baseline"] == best.max()
    assert card.loc["probing_k2", "baseline_method"] == best.idxmax()
    assert card.loc["probing_k2", "value"] >= 0.9  # the planted codes are the cell types' programs
    assert card.loc["mean_absorption", "value"] == run["absorption"]["params"]["mean_absorption"]
    assert "share_reproduced" not in card.index  # the planted run was not trained by fit_sae: nothing to refit
    best_auc = run["alignment"]["table"].query("groupby == 'cell_type'").groupby("feature")["auroc"].max()
    assert card.loc["cell_type_median_auroc", "value"] == pytest.approx(best_auc.median())
    params = run["evaluation"]["params"]
    assert params["sae_run_id"] == "run-1"
    assert set(params["results"]) == {"probing", "absorption", "alignment", "spurious"}
    spurious = run["spurious"]["params"]
    assert card.loc["technical_drop", "value"] == spurious["technical_drop"]
    assert card.loc["technical_drop", "baseline"] == spurious["random_technical_drop"]
    assert card.loc["technical_drop", "value"] < 0.1  # random donors: no feature carries them
    assert "batch_driven" in run["features"]
    assert "X_rep" not in scored.obsm  # the tools ran on a light copy


def test_scorecard_survives_h5ad_and_is_drawn(scored, tmp_path):
    scored.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    pd.testing.assert_frame_equal(
        back.uns["sae"]["evaluation"]["scorecard"], scored.uns["sae"]["evaluation"]["scorecard"]
    )
    fig = sl.pl.evaluation(back, return_fig=True)
    titles = [a.get_title() for a in fig.axes]
    assert titles[0].startswith("sparse probing (held-out donor)")
    assert titles[1] == "absorption along the label hierarchy"
    assert titles[2] == "removing the technical features"
    back.uns["sae"]["run_id"] = "run-2"
    with pytest.raises(ValueError, match="computed from SAE run run-1"):
        sl.pl.evaluation(back)


def test_probing_panel_draws_equal_baselines_apart(scored):
    """The PCA of a PCA embedding is the embedding: both curves stay visible and the legend says they agree."""
    adata = scored.copy()
    summary = adata.uns["sae"]["probing"]["summary"]
    emb, pca = summary["method"] == "embedding", summary["method"] == "pca"
    summary.loc[pca, "balanced_accuracy"] = summary.loc[emb, "balanced_accuracy"].to_numpy()
    fig = sl.pl.evaluation(adata, return_fig=True)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"sae", "embedding", "pca = embedding", "ica"}
    e, p = lines["embedding"], lines["pca = embedding"]
    by_k = summary[emb].sort_values("k")
    np.testing.assert_allclose(e.get_ydata(), by_k["balanced_accuracy"])
    np.testing.assert_allclose(p.get_ydata(), e.get_ydata())
    np.testing.assert_allclose(lines["sae"].get_xdata(), by_k["k"])  # the SAE sits on k itself
    np.testing.assert_allclose(np.log2(p.get_xdata() / e.get_xdata()), 0.08)  # the next baseline, shifted apart
    markers = {line.get_marker() for line in lines.values()}
    styles = {line.get_linestyle() for name, line in lines.items() if name != "sae"}
    assert len(markers) == 4
    assert len(styles) == 3
    assert "pca = embedding" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_compare_runs_reads_the_scorecard(scored):
    table = sl.tl.compare_runs(scored, sae_keys=["sae"])
    card = scored.uns["sae"]["evaluation"]["scorecard"].set_index("metric")["value"]
    assert table.loc["sae", "probing_k1"] == card["probing_k1"]
    assert table.loc["sae", "mean_absorption"] == card["mean_absorption"]


def test_failed_evaluation_writes_nothing(scored):
    adata = scored.copy()
    before = set(adata.uns["sae"])
    with pytest.raises(KeyError, match=r"`adata.obs\['batch'\]` not found"):
        sl.tl.evaluate(adata, groupby="cell_type", split_by="batch", key_added="again")
    with pytest.raises(ValueError, match="coarse mapping lacks fine categories"):
        sl.tl.evaluate(adata, groupby="cell_type", coarse={"type_0": "L0"}, key_added="again")
    assert set(adata.uns["sae"]) == before

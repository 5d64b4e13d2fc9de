"""feature_alignment: planted cell-type and batch features, AUROC against sklearn, storage, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad_
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl

sys.path.insert(0, str(Path(__file__).parents[1]))
from biology_fixtures import toy_with_sae


@pytest.fixture(scope="module")
def planted():
    """Toy run + feature 18 active in every type_1 cell, feature 19 active in every batch-b cell."""
    adata = toy_with_sae(n_cells=600, random_state=0)
    rng = np.random.default_rng(0)
    adata.obs["batch"] = pd.Categorical(rng.choice(["a", "b"], adata.n_obs))
    type1 = (adata.obs["cell_type"] == "type_1").to_numpy()
    batch_b = (adata.obs["batch"] == "b").to_numpy()
    extra = np.column_stack([type1 * rng.gamma(2, 1, adata.n_obs), batch_b * rng.gamma(2, 1, adata.n_obs)])
    adata.obsm["X_sae"] = sparse.hstack([adata.obsm["X_sae"], sparse.csr_matrix(extra)]).tocsr().astype(np.float32)
    feats = adata.uns["sae"]["features"]
    new = pd.DataFrame({"kind": ["live", "live"]}, index=["18", "19"])
    adata.uns["sae"]["features"] = pd.concat([feats, new])
    adata.uns["sae"]["run_id"] = "run-1"
    sl.tl.feature_alignment(adata, groupby="cell_type", technical="batch")
    return adata


def test_planted_feature_aligns_to_its_cell_type(planted):
    table = planted.uns["sae"]["features"]
    assert table.loc["18", "cell_type_best"] == "type_1"
    assert table.loc["18", "cell_type_auroc"] > 0.95
    assert table.loc["18", "cell_type_f1"] > 0.95  # held-out, threshold chosen on the training cells
    long = planted.uns["sae"]["alignment"]["table"]
    others = long[(long["feature"] == 18) & (long["groupby"] == "cell_type") & (long["category"] != "type_1")]
    assert (others["auroc"] < 0.5).all()
    # a planted local program (feature 2 = program of type_1, active in 60% of its cells) is aligned to it
    assert table.loc["2", "cell_type_best"] == "type_1"


def test_batch_driven_flag(planted):
    table = planted.uns["sae"]["features"]
    assert bool(table.loc["19", "batch_driven"]) and table.loc["19", "batch_best"] == "b"
    assert not table.loc["18", "batch_driven"]
    assert not table.loc[[str(i) for i in range(8)], "batch_driven"].any()  # local programs
    assert not table.loc[["16", "17"], "batch_driven"].any()  # dead features are never flagged


def test_batch_driven_rule_on_planted_batch_and_cell_type_features():
    """6 cell types x 3 batches; each planted feature's flag follows the documented AUROC rule."""
    rng = np.random.default_rng(1)
    n = 1800
    ct, batch = rng.integers(6, size=n), rng.integers(3, size=n)
    on = {
        "batch_1, every cell type": batch == 1,
        "batch_1, 40% of its cells": (batch == 1) & (rng.random(n) < 0.4),
        "batch_1, 3 of 6 cell types": (batch == 1) & (ct < 3),  # no batch effect in types without programs
        "type_2, every batch": ct == 2,
        "type_2, 40% of its cells": (ct == 2) & (rng.random(n) < 0.4),
        "batch_1 and type_2 only": (batch == 1) & (ct == 2),  # batch (~600 cells) > type (~300): not flagged
        "noise": rng.random(n) < 0.3,
    }
    expected = [True, True, True, False, False, False, False]
    act = np.column_stack([m * rng.gamma(2.0, 1.0, n) for m in on.values()]).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": [f"type_{t}" for t in ct], "batch": [f"batch_{b}" for b in batch]},
        index=[str(i) for i in range(n)],
    ).astype("category")
    adata = ad_.AnnData(obs=obs, obsm={"X_sae": sparse.csr_matrix(act)}, uns={"sae": {}})
    sl.tl.feature_alignment(adata, groupby="cell_type", technical="batch")
    table = adata.uns["sae"]["features"]
    np.testing.assert_array_equal(table["batch_driven"].to_numpy(dtype=bool), expected)
    np.testing.assert_array_equal(table["batch_driven"], table["batch_auroc"] > table["cell_type_auroc"])
    assert (table.loc[["0", "1", "2"], "batch_best"] == "batch_1").all()
    assert table.loc["0", "batch_auroc"] > 0.99 and table.loc["0", "cell_type_auroc"] < 0.6
    # a feature on one batch within one cell type: AUROC 0.5 + n_both / (2 n_group) for each
    both = on["batch_1 and type_2 only"].sum()
    assert table.loc["5", "batch_auroc"] == pytest.approx(0.5 + both / (2 * (batch == 1).sum()))
    assert table.loc["5", "cell_type_auroc"] == pytest.approx(0.5 + both / (2 * (ct == 2).sum()))


def test_auroc_equals_sklearn_and_scores_are_consistent(planted):
    from sklearn.metrics import roc_auc_score

    long = planted.uns["sae"]["alignment"]["table"]
    act = planted.obsm["X_sae"].toarray()
    for f, cat in [(3, "type_2"), (9, "type_0"), (19, "b")]:
        col = "batch" if cat == "b" else "cell_type"
        row = long[(long["feature"] == f) & (long["category"] == cat)].iloc[0]
        truth = (planted.obs[col] == cat).to_numpy()
        assert row["auroc"] == pytest.approx(roc_auc_score(truth, act[:, f]), abs=1e-9)
        p, r = row["precision"], row["recall"]
        assert row["f1"] == pytest.approx(2 * p * r / (p + r) if p + r > 0 else 0.0)
    assert set(long["feature"]) == set(range(16)) | {18, 19}  # dead features left out


def test_params_round_trip_and_plot(planted, tmp_path):
    params = planted.uns["sae"]["alignment"]["params"]
    assert params["sae_run_id"] == "run-1" and params["n_test"] == 180
    planted.write_h5ad(tmp_path / "a.h5ad")
    back = ad_.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.uns["sae"]["alignment"]["table"], planted.uns["sae"]["alignment"]["table"], check_dtype=False)
    assert back.uns["sae"]["features"]["batch_driven"].dtype == bool
    fig = sl.pl.alignment(planted, groupby="cell_type", n_features=10, return_fig=True)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 10 and len(ax.get_xticklabels()) == 4
    assert "18" in [t.get_text() for t in ax.get_yticklabels()]  # no label: the feature number alone


def test_seeded_split_is_reproducible(planted):
    again = sl.tl.feature_alignment(planted, groupby="cell_type", technical="batch", copy=True)
    pd.testing.assert_frame_equal(again.uns["sae"]["alignment"]["table"], planted.uns["sae"]["alignment"]["table"])
    other = sl.tl.feature_alignment(planted, groupby="cell_type", random_state=1, copy=True)
    assert not np.allclose(
        other.uns["sae"]["alignment"]["table"]["f1"], planted.uns["sae"]["alignment"]["table"].query("groupby == 'cell_type'")["f1"]
    )


def test_errors_leave_adata_unchanged(planted):
    before = dict(planted.uns["sae"])
    with pytest.raises(KeyError, match=r"`adata.obs\['tissue'\]` not found"):
        sl.tl.feature_alignment(planted, groupby=["cell_type", "tissue"])
    with pytest.raises(ValueError, match="both in groupby and technical"):
        sl.tl.feature_alignment(planted, groupby="batch", technical="batch")
    with pytest.raises(ValueError, match=r"test_size must be in \(0, 1\)"):
        sl.tl.feature_alignment(planted, groupby="cell_type", test_size=1.0)
    with pytest.raises(KeyError, match="No SAE run under key 'ica'"):
        sl.tl.feature_alignment(planted, groupby="cell_type", sae_key="ica")
    with pytest.raises(KeyError, match="alignment_key|feature_alignment"):
        sl.pl.alignment(planted, alignment_key="nope")
    assert planted.uns["sae"].keys() == before.keys()


def test_stale_alignment_is_refused(planted):
    refit = planted.copy()
    refit.uns["sae"]["run_id"] = "run-2"  # as if the SAE had been refitted
    with pytest.raises(ValueError, match="computed from SAE run run-1.*Re-run `sl.tl.feature_alignment"):
        sl.pl.alignment(refit)
    with pytest.raises(ValueError, match="computed from SAE run run-1"):
        sl.tl.compare_runs(refit, sae_keys=["sae"])

"""High / low cell sets at any data size: the min_high floor, what is skipped and why, the advice given."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl
from sclens._cli import main
from sclens.tl._annotation._cellsets import cell_sets, skip_message

N = 100


def _acts() -> sparse.csc_matrix:
    """100 cells: f0 active in 50 (distinct values), f1 in 4, f2 in 1, f3 never, f4 in 99 cells."""
    a = np.zeros((N, 5), dtype=np.float32)
    a[:50, 0] = np.arange(1, 51)
    a[[3, 60, 70, 80], 1] = [1, 2, 3, 4]
    a[5, 2] = 1.0
    a[1:, 4] = np.arange(1, N)
    return sparse.csc_matrix(a)


def _sets(**kw):
    args = {"high_quantile": 0.99, "low_quantile": None, "n_low": 1000, "min_high": 10, "mask": None, "seed": 0}
    return cell_sets(_acts(), np.arange(5), **{**args, **kw})


def test_high_set_is_the_top_min_high_cells_on_small_data():
    sets = _sets()
    assert sets.features.tolist() == [0, 1]
    high = [sets.high[:, j].indices.tolist() for j in range(2)]
    assert high[0] == list(range(40, 50))  # the 10 most active, though 1 % of 100 cells is 1 cell
    assert high[1] == [3, 60, 70, 80]  # all 4 active cells
    assert np.diff(sets.low.indptr).tolist() == [50, 96]  # every zero cell, fewer than n_low
    skipped = sets.skipped.set_index("feature")
    assert skipped["reason"].to_dict() == {
        2: "active in 1 selected cell(s); a group needs at least 2",
        3: "never active in the selected cells",
        4: "low set has 1 cell(s) (zero cells); a group needs at least 2",
    }
    assert skipped.loc[4, ["n_high", "n_low"]].tolist() == [10, 1]


def test_quantile_rule_unchanged_on_large_data():
    rng = np.random.default_rng(0)
    a = np.where(rng.random((5000, 1)) < 0.3, rng.gamma(2, 1, (5000, 1)), 0).astype(np.float32)
    sets = cell_sets(sparse.csc_matrix(a), np.array([0]), high_quantile=0.99, low_quantile=None, n_low=1000,
                     min_high=10, mask=None, seed=0)  # fmt: skip
    high = sets.high[:, 0].indices
    assert high.size == 50  # 1 % of 5,000 cells: min_high does not shrink or grow it
    assert a[high, 0].min() >= np.quantile(a[:, 0], 0.99)
    assert np.diff(sets.low.indptr).tolist() == [1000] and (a[sets.low[:, 0].indices, 0] == 0).all()


def test_low_quantile_sets_are_disjoint():
    sets = _sets(low_quantile=0.2, high_quantile=0.95)
    hi, lo = set(sets.high[:, 0].indices), set(sets.low[:, 0].indices)
    assert not hi & lo and len(hi) == 10 and lo == set(range(10))  # values 1..10 at or below the 20 % quantile


def test_advice_is_computed_from_the_call():
    skipped = _sets().skipped
    text = skip_message(skipped, 5, cells=None, low_quantile=None)
    assert text.startswith("3 of 5 feature(s) cannot be tested: ")
    assert "low_quantile=0.05" in text and "cells=" not in text
    only_rare = skipped[skipped["feature"] != 4]
    assert skip_message(only_rare, 5, cells=None, low_quantile=None).endswith(
        "no setting can test a feature that (almost) never varies"
    )
    assert "select more cells with `cells=`" in skip_message(only_rare, 5, cells={"cell_type": "B"}, low_quantile=None)


@pytest.fixture
def rare(toy_annot):
    """The toy annotation data with only features that cannot be tested (active in one cell)."""
    ad = toy_annot[:, :].copy()
    a = np.zeros((ad.n_obs, ad.obsm["X_sae"].shape[1]), dtype=np.float32)
    a[0, :3] = 1.0
    ad.obsm["X_sae"] = sparse.csr_matrix(a)
    return ad


def test_nothing_testable_raises_and_leaves_adata_alone(rare, tmp_path, capsys):
    gs = rare.uns["toy"]["gene_sets"]
    with pytest.raises(ValueError, match=r"^annotate_features: 3 of 3 feature\(s\) cannot be tested: active in N"):
        sl.tl.annotate_features(rare, gene_sets=gs, layer="counts", features=[0, 1, 2], min_size=3)
    assert "sae_go" not in rare.uns and "n_terms" not in rare.uns["sae"]["features"]
    # the command exits with status 1 and the reason
    del rare.uns["toy"]
    rare.write_h5ad(tmp_path / "rare.h5ad")
    gmt = tmp_path / "p.gmt"
    sl.datasets.write_gmt(gs, gmt)
    argv = ["-q", "annotate", str(tmp_path / "rare.h5ad"), "-o", str(tmp_path / "o.h5ad"), "--gene-sets", str(gmt)]
    assert main([*argv, "--layer", "counts"]) == 1
    assert capsys.readouterr().err == (
        # features=None: the live features (active in some cell; sclens._features), here the 3 rare ones
        "sclens annotate: error: annotate_features: 3 of 3 feature(s) cannot be tested: active in N selected "
        "cell(s) (3); no setting can test a feature that (almost) never varies\n"
    )
    assert not (tmp_path / "o.h5ad").exists()


def test_cli_help_shows_the_api_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag, value in [("--high-quantile", 0.99), ("--min-high", 50), ("--n-low", 1000), ("--de-alpha", 0.05)]:
        assert flag in out and f"(default: {value})" in out


def test_features_table_records_sets_and_reasons(toy_annot, tmp_path):
    ad = toy_annot.copy()
    gs = ad.uns["toy"]["gene_sets"]
    a = ad.obsm["X_sae"].toarray()
    a[:, 17] = 0
    a[7, 17] = 2.0  # feature 17 now active in one cell
    ad.obsm["X_sae"] = sparse.csr_matrix(a)
    sl.tl.annotate_features(ad, gene_sets=gs, layer="counts", features=[0, 17], min_size=3)
    table = ad.uns["sae"]["features"]
    assert table.loc["17", "skip_reason"] == "active in 1 selected cell(s); a group needs at least 2"
    assert table.loc["17", ["n_terms", "label", "n_high"]].tolist() == [0, "", 1]
    assert table.loc["0", "skip_reason"] == "" and table.loc["0", "n_high"] == 50  # min_high: 1 % of 1,500 is 15
    ad.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad").uns["sae"]["features"]
    cols = ["n_terms", "best_term", "best_padj", "n_high", "n_low", "skip_reason", "label"]
    pd.testing.assert_frame_equal(back[cols], table[cols], check_dtype=False)


def test_quantile_with_zeros_matches_numpy():
    from sclens.tl._annotation._cellsets import _quantile_with_zeros

    rng = np.random.default_rng(0)
    for _ in range(200):
        v = np.sort(rng.gamma(1, 1, rng.integers(1, 50)))
        n_zero, q = int(rng.integers(0, 100)), rng.random()
        ref = np.quantile(np.concatenate([np.zeros(n_zero), v]), q)
        assert _quantile_with_zeros(v, n_zero, q) == pytest.approx(ref, rel=1e-12, abs=1e-12)

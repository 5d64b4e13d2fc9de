"""Steering scored against chance: the chosen features next to random sets of as many, steered the same way.

Planted toy: feature ``p`` is program ``p`` (features 0-7 local to a cell type, two each; 8-15 global;
16-17 dead), so the right answer is known: type_0 -> type_1 is made by switching 0, 1 off and 2, 3 on.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import toy_decoder, toy_with_sae

from sclens.tl._steering._chance import STRENGTHS, check_chance_args, empirical_pvalue
from sclens.tl._steering._steer import steer
from sclens.tl._steering._steer_core import select_cells, steer_run
from sclens.tl._steering._steer_towards import _towards_chance, steer_towards

TOWARDS = {"source": {"cell_type": "type_0"}, "target": {"cell_type": "type_1"}, "max_features": 4}


@pytest.fixture(scope="module")
def toy():
    return toy_with_sae(n_cells=400)


@pytest.fixture(scope="module")
def towards(toy):
    return steer_towards(toy, decode=toy_decoder(toy), **TOWARDS)


def test_empirical_pvalue_counts_ties_and_adds_one():
    null = np.array([0.9, 0.8, 0.7, 0.5])
    assert empirical_pvalue(0.4, null, larger_is_better=False) == pytest.approx(1 / 5)  # beats all
    assert empirical_pvalue(0.7, null, larger_is_better=False) == pytest.approx(3 / 5)  # a tie counts
    assert empirical_pvalue(0.95, null, larger_is_better=True) == pytest.approx(1 / 5)
    assert empirical_pvalue(0.8, null, larger_is_better=True) == pytest.approx(3 / 5)
    assert np.isnan(empirical_pvalue(0.4, np.array([]), larger_is_better=False))


def test_chosen_features_beat_random_ones(toy, towards):
    rec = towards.uns["steer_towards"]
    info, chosen = rec["params"], list(rec["features"].index)
    assert set(chosen[:3]) == {0, 1, 2}
    table = rec["baseline"]
    assert list(table.index) == ["chosen"] + [f"random_{i}" for i in range(50)]
    # random sets: as many features, never a chosen one, all active in the source or the target
    active = set(range(16))
    for feats in table["features"].iloc[1:]:
        drawn = {int(f) for f in feats.split(",")}
        assert len(drawn) == 4
        assert not drawn & set(chosen)
        assert drawn <= active
    # random features set to the target means also bring the cells closer (the retired frac_closer was
    # 1.0 for them too), but far less than the chosen ones: every draw is worse, p = 1 / 51
    assert (table["distance_ratio"].iloc[1:] < 1).all()
    assert info["distance_ratio"] == pytest.approx(0.641, abs=0.005)
    assert info["distance_ratio_random"] == pytest.approx(0.880, abs=0.01)
    assert info["distance_ratio_pvalue"] == pytest.approx(1 / 51)
    assert info["frac_closer_than_random"] > 0.7
    # the target's markers (programs 2 and 3) rise more than under any random set
    assert info["marker_shift"] > 0.7 > 0.1 > info["marker_shift_random"]
    assert info["marker_shift_pvalue"] == pytest.approx(1 / 51)
    assert info["distance_ratio"] == pytest.approx(info["distance_after"] / info["distance_before"])
    assert info["distance_ratio"] == table.loc["chosen", "distance_ratio"]


def test_wrong_choice_gives_large_p_and_half_the_cells(toy):
    """Random sets passed as the "chosen" features score like chance: p about uniform, half the cells closer."""
    run = steer_run(toy, "sae")
    src, tgt = select_cells(toy, {"cell_type": "type_0"}), select_cells(toy, {"cell_type": "type_1"})
    mu_t = run.embedding(toy, tgt).mean(axis=0)
    m_t, m_s = (np.asarray(run.act[i].mean(axis=0)).ravel() for i in (tgt, src))
    pool = np.flatnonzero((m_s > 0) | (m_t > 0))
    rng = np.random.default_rng(1)
    pvalues, fractions, naive = [], [], []
    for seed in range(20):
        wrong = np.sort(rng.choice(pool, 4, replace=False))
        _, res = _towards_chance(
            toy, run, src, wrong, mu_t, m_t, n_random=50, strengths=np.array(STRENGTHS), seed=seed, scores_of=None
        )
        pvalues.append(res["distance_ratio_pvalue"])
        fractions.append(res["frac_closer_than_random"])
        naive.append(res["distance_ratio"] < 1)
    assert all(naive)  # the old score ("closer than before") passes every wrong choice
    assert 0.3 < np.median(pvalues) < 0.7
    assert 0.35 < np.median(fractions) < 0.6
    assert np.mean(np.array(pvalues) < 0.05) <= 0.1


def test_dose_response_towards(towards):
    rec = towards.uns["steer_towards"]
    info, dose = rec["params"], rec["dose_response"]
    assert info["dose_metric"] == "distance_ratio"
    np.testing.assert_allclose(dose["strength"], STRENGTHS)
    assert dose["chosen"].iloc[0] == pytest.approx(1.0)
    assert dose["random_median"].iloc[0] == pytest.approx(1.0)
    at_one = dose.loc[dose["strength"] == 1.0]
    assert at_one["chosen"].item() == pytest.approx(info["distance_ratio"])
    assert at_one["random_median"].item() == pytest.approx(info["distance_ratio_random"])
    up_to_one = dose.loc[dose["strength"] <= 1.0, "chosen"].to_numpy()
    assert (np.diff(up_to_one) < 0).all()  # a stronger push brings the cells closer, up to the target means
    assert (dose["chosen"].iloc[1:] < dose["random_q05"].iloc[1:]).all()  # below the random band at every strength
    assert (dose["random_q05"] <= dose["random_median"]).all()
    assert (dose["random_median"] <= dose["random_q95"]).all()


def test_steer_knockout_of_a_used_feature_beats_random_knockouts(toy):
    out = steer(toy, features=0, cells={"cell_type": "type_0"}, mode="knockout")
    info = out.uns["steer"]["params"]
    sel = (toy.obs["cell_type"] == "type_0").to_numpy()
    z0 = toy.obsm["X_sae"][sel, 0].toarray().ravel()
    w0 = toy.uns["sae"]["weights"]["W_dec"][0]
    assert info["displacement"] == pytest.approx(np.abs(z0).mean() * np.linalg.norm(w0), rel=1e-6)
    assert info["displacement_pvalue"] == pytest.approx(1 / 51)
    # knocking out type_1's program in type_0 cells, where it is off, moves nothing: p = 1
    wrong = steer(toy, features=2, cells={"cell_type": "type_0"}, mode="knockout").uns["steer"]["params"]
    assert wrong["displacement"] == 0.0
    assert wrong["displacement_pvalue"] == 1.0
    # the same rule on the random features: each set to its own maximum, in the same cells
    maxed = steer(toy, features=9, cells={"cell_type": "type_0"}, n_random=5).uns["steer"]
    acts = toy.obsm["X_sae"].toarray()
    w = toy.uns["sae"]["weights"]["W_dec"]
    for feats, moved in zip(maxed["baseline"]["features"], maxed["baseline"]["displacement"], strict=True):
        f = int(feats)
        assert moved == pytest.approx(np.abs(acts[:, f].max() - acts[sel, f]).mean() * np.linalg.norm(w[f]), rel=1e-5)
    # dose-response: linear in the strength while no code is clipped at 0
    dose = maxed["dose_response"].set_index("strength")
    assert dose.loc[0.5, "chosen"] == pytest.approx(0.5 * maxed["params"]["displacement"], rel=1e-6)


def test_steer_expression_shift_against_random_features(toy):
    """With a decoder each draw's cells are decoded: the share of expression moved, next to random knockouts.

    Knocking out type_0's two programs moves type_0 cells further than any two random features
    (displacement p = 1 / 21), but not more expression than knocking out two of the global programs,
    which are on in these cells too: the expression p-value says so (8 of the 20 random sets move as much).
    """
    out = steer(
        toy, features=[0, 1], cells={"cell_type": "type_0"}, mode="knockout", decode=toy_decoder(toy), n_random=20
    )
    info, table = out.uns["steer"]["params"], out.uns["steer"]["baseline"]
    n = out.n_obs // 2
    frac = out.X / out.X.sum(axis=1, keepdims=True)
    assert info["expression_shift"] == pytest.approx(0.5 * np.abs(frac[n:] - frac[:n]).sum(axis=1).mean(), rel=1e-5)
    assert info["displacement_pvalue"] == pytest.approx(1 / 21)
    assert info["expression_shift_pvalue"] == pytest.approx(8 / 21)
    # random knockouts of features that are off in these cells move neither the embedding nor the expression
    still = table["displacement"] == 0
    assert still.sum() >= 2
    assert (table.loc[still, "expression_shift"] < 1e-6).all()
    assert (table.loc[~still, "expression_shift"] > 0.01).all()
    # a decoder on another scale (negative values: not expression at count scale) gets no expression shift
    decode = toy_decoder(toy)
    logged = steer(toy, features=0, mode="knockout", decode=lambda e, c: np.log(decode(e, c)), n_random=2)
    assert list(logged.uns["steer"]["baseline"].columns) == ["features", "displacement"]


def test_chance_h5ad_round_trip(towards, tmp_path):
    towards.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad").uns["steer_towards"]
    info = towards.uns["steer_towards"]
    pd.testing.assert_frame_equal(back["baseline"], info["baseline"])
    pd.testing.assert_frame_equal(back["dose_response"], info["dose_response"])
    assert back["params"]["distance_ratio_pvalue"] == info["params"]["distance_ratio_pvalue"]
    assert back["params"]["frac_closer_than_random"] == info["params"]["frac_closer_than_random"]


def test_chance_bad_input(toy):
    before = toy.copy()
    for bad in (-1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="n_random must be a non-negative integer"):
            steer(toy, features=0, n_random=bad)
    for bad in ([], [-0.5, 1], [np.nan], "strong"):
        with pytest.raises(ValueError, match="strengths must be a non-empty sequence of finite numbers >= 0"):
            steer_towards(toy, strengths=bad, **TOWARDS)
    with pytest.raises(ValueError, match=r"n_random=3: only 0 other live feature\(s\) to draw random sets of 16"):
        steer(toy, features=list(range(16)), n_random=3)
    assert check_chance_args(0, [1, 0.5, 1])[1].tolist() == [0.5, 1.0]
    np.testing.assert_array_equal(toy.obsm["X_sae"].toarray(), before.obsm["X_sae"].toarray())
    assert set(toy.uns) == set(before.uns)

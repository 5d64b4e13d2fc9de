"""Enrichment kernels against scipy and the decoupler route."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

import sclens as sl
from sclens.tl._annotation._enrich import gene_set_matrix, ora
from sclens.tl._annotation._scfeaturelens import mannwhitney_greater


def test_ora_equals_fisher_exact():
    rng = np.random.default_rng(0)
    genes = pd.Index([f"g{i}" for i in range(300)])
    sets = {f"s{j}": list(rng.choice(genes, rng.integers(5, 60), replace=False)) for j in range(40)}
    gs = gene_set_matrix(sets, genes)
    background = rng.random((3, 300)) < 0.8
    study = (rng.random((3, 300)) < 0.15) & background
    res = ora(study, background, gs, min_size=1, max_size=None)
    checked = 0
    for t, term in enumerate(gs.terms["term"]):
        members = genes.isin(sets[term])
        for j in range(3):
            a = int((members & study[j]).sum())
            b = int((~members & study[j]).sum())
            c = int((members & background[j] & ~study[j]).sum())
            d = int((~members & background[j] & ~study[j]).sum())
            odds, p = stats.fisher_exact([[a, b], [c, d]], alternative="greater")
            assert abs(res["pvalue"][t, j] - p) < 1e-10
            assert res["n_overlap"][t, j] == a and res["set_size"][t, j] == a + c
            if np.isfinite(odds) and odds > 0:
                assert res["odds_ratio"][t, j] == pytest.approx(odds)
            checked += 1
    assert checked == 120
    for j in range(3):
        np.testing.assert_allclose(res["padj"][:, j], stats.false_discovery_control(res["pvalue"][:, j]))


def test_mannwhitney_equals_scipy():
    rng = np.random.default_rng(2)
    values = np.round(rng.normal(size=200), 1)  # ties on purpose
    members = sparse.csr_matrix((rng.random((15, 200)) < 0.1).astype(float))
    p = mannwhitney_greater(values, members)
    for t in range(15):
        m = members[t].toarray().ravel() > 0
        ref = stats.mannwhitneyu(values[m], values[~m], alternative="greater", method="asymptotic")
        assert p[t] == pytest.approx(ref.pvalue, rel=1e-10)


def test_no_overlap_raises(toy_annot):
    with pytest.raises(ValueError, match=r"None of the gene-set genes are in `adata.var_names` \(e.g. gene_0000"):
        sl.tl.annotate_features(toy_annot, gene_sets={"x": ["CD3E", "MS4A1"]}, layer="counts")


def test_decoupler_ulm_recovers_programs(toy_annot_copy):
    ad = toy_annot_copy
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", enrichment="ulm",
                            features=list(range(8)), min_size=3)  # fmt: skip
    res = ad.uns["sae_go"]["results"]
    assert "score" in res.columns and (res["score"] > 0).all()
    assert (res["padj"] < 0.05).all()  # the default alpha
    for f in range(8):
        assert f"program_{f:02d}" in set(res.loc[res["feature"] == f, "term"])
    with pytest.raises(ValueError, match="Unknown enrichment 'nope'"):
        sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", enrichment="nope")


def test_hypergeom_sf_equals_scipy():
    """The vectorised upper tail agrees with SciPy from p ~ 1 to p ~ 1e-290, at GO-sized sets and genomes."""
    from sclens.tl._annotation._enrich import hypergeom_sf

    rng = np.random.default_rng(1)
    total = rng.integers(20, 20_000, 3000)
    good = (rng.random(3000) * np.minimum(total, 600)).astype(int) + 1
    draws = (rng.random(3000) * np.minimum(total, 3000)).astype(int) + 1
    k = np.minimum((rng.random(3000) * (np.minimum(good, draws) + 2)).astype(int), np.minimum(good, draws) + 1)
    want = stats.hypergeom.sf(k - 1, total, good, draws)
    got = hypergeom_sf(k, total, good, draws)
    assert (want > 0.5).sum() > 300  # both tails covered
    assert ((want < 1e-100) & (want > 1e-290)).sum() > 100
    np.testing.assert_allclose(got[want > 1e-290], want[want > 1e-290], rtol=2e-9, atol=0)
    assert got[want == 0].max(initial=0) < 1e-290

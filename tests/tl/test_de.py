"""Differential expression engines: BH, Welch, the batched NB Wald test against pyDESeq2, input checks."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse, stats

import sclens as sl
from sclens._stats import fdr_bh
from sclens.tl._annotation import _engines
from sclens.tl._annotation._de import Expression
from sclens.tl._annotation._de_deseq2 import deseq2_fit, deseq2_one
from sclens.tl._annotation._de_fast import DEResult, independent_filtering, nb_wald, size_bins
from sclens.tl._annotation._dispersion import (
    Group,
    count_histogram,
    mle_dispersions,
    nb_dispersions,
    rough_dispersions,
)
from sclens.tl._annotation._engines import FastNB
from sclens.tl._annotation._scfeaturelens import welch
from sclens.tl._annotation._types import Options

#: the engine's options with pyDESeq2's independent filtering, as the stored pyDESeq2 reference was run
FILTERED = Options("fast", "ora", "sclens", 0.05, 0.05, 1.0, 5, None, 1, independent_filter=True)
FLOORED = dataclasses.replace(FILTERED, dispersions="floored")  # the scan also builds the count histogram


def test_bh_equals_scipy():
    rng = np.random.default_rng(0)
    p = rng.random((3, 200)) ** 3
    p[1, rng.choice(200, 30, replace=False)] = np.nan
    q = fdr_bh(p)
    for row_p, row_q in zip(p, q, strict=True):
        ok = ~np.isnan(row_p)
        np.testing.assert_allclose(row_q[ok], stats.false_discovery_control(row_p[ok]), rtol=1e-12)
        assert np.isnan(row_q[~ok]).all()


def test_welch_equals_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2, 2, size=(30, 50)), rng.gamma(2, 2.5, size=(70, 50))
    de, fc = welch(a.sum(0)[None], (a**2).sum(0)[None], [30], b.sum(0)[None], (b**2).sum(0)[None], [70])
    ref = stats.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(de.stat[0], ref.statistic, rtol=1e-8)
    np.testing.assert_allclose(de.pvalue[0], ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(fc[0], a.mean(0) / b.mean(0), rtol=1e-12)


@pytest.mark.slow
def test_fast_agrees_with_pydeseq2(engines_pair):
    """Wald statistics and log2 fold changes of the batched engine track pyDESeq2 on 20 planted features.

    Measured: median Spearman 0.973 (pooled 0.944), log2FC Pearson 0.993 against pyDESeq2 run with
    DESeq2's single-cell settings (poscounts, no Cook's outlier replacement); with replacement on, the
    median was 0.933. (0.974 / 0.949 with the earlier fixed dispersion weight 0.25.)
    """
    fast, ref = engines_pair.uns["fast"]["de"], engines_pair.uns["deseq2"]["de"]
    rho, r_lfc, pooled_a, pooled_b = [], [], [], []
    for f in [str(i) for i in range(20)]:
        a, b = fast[f], ref[f]
        ok = (a["stat"].notna() & b["stat"].notna()).to_numpy()
        rho.append(stats.spearmanr(a["stat"][ok], b["stat"][ok]).statistic)
        r_lfc.append(stats.pearsonr(a["log2fc"][ok], b["log2fc"][ok]).statistic)
        pooled_a.append(a["stat"][ok])
        pooled_b.append(b["stat"][ok])
    assert len(rho) == 20
    assert np.median(rho) >= 0.9, rho
    assert stats.spearmanr(np.concatenate(pooled_a), np.concatenate(pooled_b)).statistic >= 0.9
    assert np.median(r_lfc) >= 0.95, r_lfc


def _groups(y, s, high, centres, bins):
    """High and low :class:`Group` of one contrast from dense counts ``y`` (cells x genes) and size factors ``s``."""
    out = []
    for sel in (high, ~high):
        z = y[sel] / s[sel, None]
        nbin = np.bincount(bins[sel], minlength=centres.size)[None].astype(float)
        out.append(Group(np.array([sel.sum()]), nbin, np.array([np.mean(1 / s[sel])]), y[sel].sum(0)[None] * 1.0,
                         z.sum(0)[None], (z**2).sum(0)[None]))  # fmt: skip
    return out


def _nb(rng, mean, alpha):
    return rng.poisson(rng.gamma(1 / alpha, mean * alpha))


def test_nb_wald_matches_statsmodels_glm():
    """At fixed dispersion the Wald test is a NB GLM's: log fold change and z against statsmodels.

    60 vs 200 cells with 4 distinct size factors (0.5-2), 40 genes whose fitted means stay above
    pyDESeq2's floor (0.5 per cell; statsmodels has none). The group means solve the NB score equation
    with ``sum_i y_i / (1 + alpha m_i)`` taken from the sums of ``y`` and ``y / s`` (exact when the size
    factors are equal). Measured: median |d beta| 0.003, max 0.012; median relative |d z| 0.3 %, 90th percentile
    1.6 %, at most 0.11 + 2 % of |z|. With z halved or the information off by 2x this fails.
    """
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    nh, nl, g = 60, 200, 40
    s = rng.choice([0.5, 0.8, 1.25, 2.0], nh + nl)
    high = np.r_[np.ones(nh), np.zeros(nl)].astype(bool)
    mu, lfc, alpha = (
        np.maximum(rng.lognormal(2, 0.7, g), 5),
        np.clip(rng.normal(0, 1, g), -1, 2),
        rng.uniform(0.05, 1, g),
    )
    y = _nb(rng, s[:, None] * mu * np.where(high[:, None], np.exp(lfc), 1.0), alpha)
    bins, centres = size_bins(s)
    de = nb_wald(*_groups(y, s, high, centres, bins), centres, alpha[None], filtering=False)
    design = np.column_stack([np.ones(nh + nl), high])
    ref = [sm.GLM(y[:, j], design, family=sm.families.NegativeBinomial(alpha=alpha[j]), offset=np.log(s)).fit(tol=1e-12)
           for j in range(g)]  # fmt: skip
    beta_ref = np.array([r.params[1] for r in ref])
    z_ref = np.array([r.params[1] / r.bse[1] for r in ref])
    d_beta = np.abs(de.log2fc[0] * np.log(2) - beta_ref)
    d_z = np.abs(de.stat[0] - z_ref)
    assert np.median(d_beta) < 0.005, np.median(d_beta)
    assert d_beta.max() < 0.03, d_beta.max()
    assert np.median(d_z / np.abs(z_ref)) < 0.01, np.median(d_z / np.abs(z_ref))
    assert (d_z <= 0.1 + 0.02 * np.abs(z_ref)).all(), np.max(d_z - 0.02 * np.abs(z_ref))


def test_null_pvalues_are_calibrated():
    """Random high / low cells of NB counts: 5 % of genes at p < 0.05 (share in [0.03, 0.07]).

    2,000 cells x 300 genes (means 0.05-50, dispersions 0.05-2 around a trend), 12 contrasts of 100 random
    high vs 500 random low cells; the engine's size factors, per-contrast dispersions and Wald test.
    """
    rng = np.random.default_rng(1)
    n, g = 2000, 300
    mean = rng.lognormal(0, 1.5, g).clip(0.05, 50)
    alpha = (0.1 + 0.5 / mean) * rng.lognormal(0, 0.3, g)
    y = _nb(rng, rng.lognormal(0, 0.3, n)[:, None] * mean, alpha)
    ad = AnnData(sparse.csr_matrix(y.astype(np.float32)))
    cells = [rng.permutation(n)[:600] for _ in range(12)]
    high = sparse.csc_matrix((np.ones(1200), (np.concatenate([c[:100] for c in cells]), np.repeat(range(12), 100))),
                             shape=(n, 12))  # fmt: skip
    low = sparse.csc_matrix((np.ones(6000), (np.concatenate([c[100:] for c in cells]), np.repeat(range(12), 500))),
                            shape=(n, 12))  # fmt: skip
    de = FastNB(Expression(ad), high, low, FILTERED).test(slice(None))
    share = np.nanmean(de.pvalue < 0.05)
    assert 0.03 <= share <= 0.07, share


@pytest.fixture(scope="module")
def mixture_null():
    """Null contrasts on cells that mix program-active and silent states, and pyDESeq2's fit of the first 3.

    ``sl.datasets.toy`` (1,000 cells, 300 genes, 240 of them in 16 programs, each active in part of the
    cells): 40 contrasts of 50 random high vs 500 random low cells (no expression difference).
    """
    adata = sl.datasets.toy(n_cells=1000, n_genes=300, genes_per_program=15, random_state=0)
    gs = adata.uns["toy"]["gene_sets"]
    program = adata.var_names.isin(gs.loc[gs["source"].str.startswith("program"), "target"])
    rng = np.random.default_rng(0)
    cells = [rng.permutation(adata.n_obs)[:550] for _ in range(40)]
    fits = []
    for c in cells[:3]:
        y = np.rint(adata.layers["counts"][c].toarray()).astype(np.int64)
        fits.append((y, deseq2_fit(y, 50, pd.Index(adata.var_names), independent_filter=False)))
    return adata, program, cells, fits


def test_wald_equals_pydeseq2_at_its_dispersions(mixture_null):
    """With pyDESeq2's dispersions and size factors the fast Wald test gives pyDESeq2's p-values.

    On these null contrasts pyDESeq2 puts 13-32 % of the program genes at ``p < 0.05`` (its dispersions
    are too small for mixed genes, :func:`test_floored_dispersions_hold_the_null_on_mixtures`); the fast
    test given the same dispersions and size factors puts the same share there (measured: 0.0-0.5
    points apart). Its z differs by a median 0.013-0.017 (90th percentile 0.04-0.05, at most 0.15): the
    16 size-factor bins and ``sum_i y_i / (1 + alpha m_i)`` from two sums (with one bin per cell the
    median is still 0.007-0.015). The Wald step is not what makes the fast engine anti-conservative.
    """
    _, program, _, fits = mixture_null
    for y, ds in fits:
        s = ds.dds.obs["size_factors"].to_numpy()
        bins, centres = size_bins(s)
        high = np.arange(y.shape[0]) < 50
        disp = ds.dds.var["dispersions"].to_numpy()[None]
        de = nb_wald(*_groups(y, s, high, centres, bins), centres, disp, filtering=False)
        ref = ds.results_df
        ok = np.isfinite(ref["pvalue"].to_numpy())
        share_ref = np.mean(ref["pvalue"].to_numpy()[ok & program] < 0.05)
        share = np.mean(de.pvalue[0][ok & program] < 0.05)
        assert share_ref > 0.1, share_ref
        assert abs(share - share_ref) <= 0.01, (share, share_ref)
        d_z = np.abs(de.stat[0][ok] - ref["stat"].to_numpy()[ok])
        assert np.median(d_z) < 0.025, np.median(d_z)
        assert np.quantile(d_z, 0.9) < 0.06, np.quantile(d_z, 0.9)


@pytest.mark.parametrize(("estimator", "calibrated"), [("floored", True), ("moments", True), ("pydeseq2", False)])
def test_floored_dispersions_hold_the_null_on_mixtures(mixture_null, estimator, calibrated):
    """The engine's default dispersions keep the program genes of null contrasts at 5 % with ``p < 0.05``.

    40 contrasts x 240 program genes (genes of one program move together, so a single contrast is far
    too noisy). Measured (share at ``p < 0.05``): floored 0.043, moments 0.042, pyDESeq2's
    estimator 0.19 (the other genes: 0.031, 0.018, 0.031).
    """
    adata, program, cells, _ = mixture_null
    n, k = adata.n_obs, len(cells)
    high = sparse.csc_matrix((np.ones(50 * k), (np.concatenate([c[:50] for c in cells]), np.repeat(range(k), 50))),
                             shape=(n, k))  # fmt: skip
    low = sparse.csc_matrix((np.ones(500 * k), (np.concatenate([c[50:] for c in cells]), np.repeat(range(k), 500))),
                            shape=(n, k))  # fmt: skip
    eng = FastNB(Expression(adata, layer="counts"), high, low, FLOORED)
    groups = eng.groups(slice(None))
    disp = nb_dispersions(*groups, eng.centres, eng.scan.hist, estimator=estimator)
    p = nb_wald(*groups, eng.centres, disp, filtering=False).pvalue
    share = np.nanmean(p[:, program] < 0.05)
    assert (0.03 <= share <= 0.07) == calibrated, share


def test_dispersions_leave_the_group_difference_out():
    """Per-contrast dispersions: a gene 8-fold up in the high cells keeps its true dispersion (0.2).

    Moments over all cells (the engine before issue 20) counted the group difference as noise (about 1.4 here).
    """
    rng = np.random.default_rng(2)
    nh, nl, g = 200, 800, 400
    s = rng.lognormal(0, 0.3, nh + nl)
    high = np.r_[np.ones(nh), np.zeros(nl)].astype(bool)
    y = _nb(rng, s[:, None] * rng.lognormal(1.5, 0.5, g) * np.where(high[:, None], 8.0, 1.0), 0.2)
    bins, centres = size_bins(s)
    est = nb_dispersions(*_groups(y, s, high, centres, bins), centres, count_histogram(y)[None])
    assert np.median(est) == pytest.approx(0.2, rel=0.1), np.median(est)
    z = y / s[:, None]
    pooled = (z.var(0, ddof=1) - z.mean(0) * np.mean(1 / s)) / z.mean(0) ** 2
    assert np.median(pooled) > 1.0


GENEWISE = Path(__file__).parents[1] / "data" / "immune559_genewise.npz"


@pytest.fixture(scope="module")
def genewise_reference():
    """A small real-cell contrast and pyDESeq2's gene-wise dispersions and size factors on it (stored).

    immune559: the 20 cells with the most LYZ vs 60 random others, 300 genes with counts in at least 5
    of them (``test_stored_genewise_is_pydeseq2`` recomputes it).
    """
    with np.load(GENEWISE) as z:
        ref = dict(z)
    x = sl.datasets.immune559_counts().layers["counts"]
    y = np.rint(x[ref["cells"]][:, ref["genes"]].toarray()).astype(np.int64)
    return y, ref


def test_genewise_dispersions_are_pydeseq2_mle(genewise_reference):
    """On a real-cell contrast the gene-wise dispersions are pyDESeq2's Cox-Reid NB maximum likelihood.

    pyDESeq2's size factors, binned as the engine bins them; the engine takes the counts from a histogram
    (exact below 8, log2 bins above) and ``sum_i y_i f(s_i)`` from two sums, which moves the optimum of
    the flattest likelihoods (a few counts). Measured: the 202 genes pyDESeq2 leaves at its floor (start
    at the floor) are the engine's; over the other 98 the median relative difference is 1.2 %, the 90th
    percentile 6 %; the start alone is 29 % below (median). Without the Cox-Reid term the median is 8 %
    (fails); without the floor rule the 202 floored genes get 2.4-47.
    """
    y, ref = genewise_reference
    s, want = ref["size_factors"], ref["genewise"]
    bins, centres = size_bins(s)
    groups = _groups(y, s, np.arange(y.shape[0]) < int(ref["n_high"]), centres, bins)
    start = rough_dispersions(*groups)
    est = np.where(start <= 1e-8, 1e-8, mle_dispersions(*groups, centres, count_histogram(y)[None], start))[0]
    floor = want <= 1e-6
    np.testing.assert_array_equal(est <= 1e-6, floor)
    rel = np.abs(est[~floor] / want[~floor] - 1)
    assert np.median(rel) < 0.025, np.median(rel)
    assert np.quantile(rel, 0.9) < 0.1, np.quantile(rel, 0.9)
    assert np.median(start[0, ~floor] / want[~floor]) < 0.8  # what the maximum likelihood corrects


@pytest.mark.slow
def test_stored_genewise_is_pydeseq2(genewise_reference):
    """The stored gene-wise dispersions are pyDESeq2's (recomputed, about a minute on a loaded machine)."""
    y, ref = genewise_reference
    dds = deseq2_fit(y, int(ref["n_high"]), pd.Index([f"g{j}" for j in range(y.shape[1])])).dds
    np.testing.assert_allclose(dds.obs["size_factors"].to_numpy(), ref["size_factors"], rtol=1e-10)
    np.testing.assert_allclose(dds.var["genewise_dispersions"].to_numpy(), ref["genewise"], rtol=1e-4)


REFERENCE = Path(__file__).parents[1] / "data" / "immune559_deseq2.npz"


@pytest.fixture(scope="module")
def immune_reference():
    """pyDESeq2 (the reference engine's settings) on 4 SAE features of immune559, and their high / low cells.

    Features 147, 47, 178 and 82 of ``benchmarks/annotate.py --deseq2``'s SAE (28 high vs 374-520 low
    cells each); stored because pyDESeq2 takes minutes per feature on 9,810 genes
    (``test_stored_reference_is_pydeseq2`` recomputes one).
    """
    with np.load(REFERENCE) as z:
        ref = dict(z)
    adata = sl.datasets.immune559_counts()
    cols = []
    for side in ("high", "low"):
        splits = np.split(ref[side], np.cumsum(ref[side + "_n"])[:-1])
        rows, feats = np.concatenate(splits), np.repeat(np.arange(len(splits)), ref[side + "_n"])
        cols.append(sparse.csc_matrix((np.ones(rows.size), (rows, feats)), shape=(adata.n_obs, len(splits))))
    return adata, cols, ref


def agreement(adata, cols, ref, opt=FILTERED):
    """Median over the features: Wald Spearman (all genes / base mean >= 0.5), Jaccard of genes at padj < 0.05."""
    de = FastNB(Expression(adata, layer="counts"), *cols, opt).test(slice(None))
    padj_ref = np.where(np.isnan(ref["padj"]) & np.isfinite(ref["pvalue"]), 1.0, ref["padj"])
    rho, rho_hi, jac = [], [], []
    for k in range(len(ref["features"])):
        ok = np.isfinite(de.stat[k]) & np.isfinite(ref["stat"][k])
        hi = ok & (ref["base_mean"][k] >= 0.5)
        rho.append(stats.spearmanr(de.stat[k, ok], ref["stat"][k, ok]).statistic)
        rho_hi.append(stats.spearmanr(de.stat[k, hi], ref["stat"][k, hi]).statistic)
        a, b = de.padj[k] < 0.05, padj_ref[k] < 0.05
        jac.append((a & b).sum() / max((a | b).sum(), 1))
    return np.median(rho), np.median(rho_hi), np.median(jac)


def agrees(rho, rho_hi, jac):
    return rho >= 0.99 and rho_hi >= 0.99 and jac >= 0.85


@pytest.mark.parametrize("opt", [FILTERED, FLOORED], ids=["moments", "floored"])
def test_fast_agrees_with_pydeseq2_on_real_cells(immune_reference, opt):
    """Real cells (immune559, 9,810 genes), the same high / low cells as pyDESeq2, both dispersion estimators.

    Measured: median Spearman over all tested genes, over base mean >= 0.5, Jaccard of the genes at
    padj < 0.05: moment dispersions (the default) 0.994 / 0.998 / 0.867; ``dispersions="floored"``
    0.996 / 1.000 / 0.938 (floored with pyDESeq2's min_mu 0.5: 1.000 / 1.000 / 0.934; pyDESeq2's
    estimator without the moment floor: 1.000 / 1.000 / 0.889; the engine before issue 20, on 7
    features: 0.800 / 0.912 / 0.206).
    """
    rho, rho_hi, jac = agreement(*immune_reference, opt)
    assert agrees(rho, rho_hi, jac), (rho, rho_hi, jac)


def _halve_z(wald):
    def halved(*args, **kwargs):
        de = wald(*args, **kwargs)
        stat = de.stat / 2
        pvalue = 2 * stats.norm.sf(np.abs(stat))
        return DEResult(de.log2fc, stat, pvalue, independent_filtering(pvalue, de.base_mean), de.base_mean)

    return halved


def _welch(high, low, centres, alpha, **_):
    return welch(high.z, high.z2, high.n, low.z, low.z2, low.n)[0]


def _one_dispersion(*args, **kwargs):
    disp = nb_dispersions(*args, **kwargs)
    return np.broadcast_to(np.nanmedian(disp, axis=1, keepdims=True), disp.shape).copy()


BROKEN = {
    "fixed weight 0.25": ("nb_dispersions", lambda: functools.partial(nb_dispersions, weight=0.25)),
    "one dispersion for all genes": ("nb_dispersions", lambda: _one_dispersion),
    "dispersions x10": ("nb_dispersions", lambda: lambda *a, **k: 10 * nb_dispersions(*a, **k)),
    "Welch t in place of Wald": ("fast.nb_wald", lambda: _welch),
    "z halved": ("fast.nb_wald", lambda: _halve_z(nb_wald)),
}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_wrong_models_fail_the_agreement(immune_reference, monkeypatch, variant):
    """Each of these wrong models passed the toy-data check before issue 20; the real-cell check rejects them.

    Measured at the default (moment) dispersions (median Spearman all / base mean >= 0.5 / Jaccard; right:
    0.994 / 0.998 / 0.867): weight 0.25 0.990 / 0.994 / 0.67; one dispersion 0.988 / 0.989 / 0.55; x10
    0.990 / 0.995 / 0.00; Welch 0.77 / 0.985 / 0.06; z halved 0.994 / 0.998 / 0.05.
    """
    target, make = BROKEN[variant]
    holder = _engines.fast if target.startswith("fast.") else _engines
    monkeypatch.setattr(holder, target.split(".")[-1], make())
    assert not agrees(*agreement(*immune_reference))


@pytest.mark.slow
def test_stored_reference_is_pydeseq2(immune_reference):
    """The stored reference is pyDESeq2's output (the first feature recomputed, about a minute)."""
    adata, cols, ref = immune_reference
    hi, lo = cols[0][:, 0].indices, cols[1][:, 0].indices
    counts = np.rint(adata.layers["counts"][np.concatenate([hi, lo])].toarray()).astype(np.int64)
    table = deseq2_one(counts, hi.size, adata.var_names)
    np.testing.assert_allclose(table["stat"].to_numpy(), ref["stat"][0], rtol=1e-4, atol=1e-5)


def _bad_counts(adata, values):
    ad = adata.copy()
    x = ad.layers["counts"].toarray()
    x[0, :3] = values
    ad.layers["counts"] = sparse.csr_matrix(x)
    return ad


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.nan, r"NaN or infinite values; raw counts must be finite"),
        (-1.0, r"contains negative values"),
        (0.5, r"does not hold integer counts .*rounded to integers for `de_method='deseq2'`"),
    ],
)
def test_bad_counts_raise(toy_annot, values, match):
    ad = _bad_counts(toy_annot, values)
    before = set(ad.uns)
    with pytest.raises(ValueError, match=match):
        sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", de_method="deseq2")
    assert set(ad.uns) == before
    assert "n_terms" not in ad.uns["sae"]["features"]


def test_normalised_x_and_missing_layer_raise(toy_annot):
    gs = toy_annot.uns["toy"]["gene_sets"]
    with pytest.raises(ValueError, match=r"adata.X does not hold integer counts .*layer='counts'"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs)
    with pytest.raises(KeyError, match=r"`adata.layers\['raw'\]` not found; available layers: \['counts'\]"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="raw")
    with pytest.raises(ValueError, match="de_method must be 'fast' or 'deseq2'"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="counts", de_method="edger")


def test_size_factors_are_pydeseq2_poscounts():
    """With the genes' mean log counts over the same cells, the size factors are pyDESeq2's ``poscounts``."""
    from pydeseq2.dds import DeseqDataSet

    rng = np.random.default_rng(3)
    y = _nb(rng, rng.lognormal(0, 0.4, 80)[:, None] * rng.lognormal(0, 1.5, 60), 0.3)
    y[:, :3] = 0  # genes without counts
    ad = AnnData(sparse.csr_matrix(y.astype(np.float32)))
    sf = Expression(ad).scan([sparse.csc_matrix((80, 1))]).size_factors
    meta = pd.DataFrame({"condition": ["a", "b"] * 40}, index=[f"c{i}" for i in range(80)])
    dds = DeseqDataSet(counts=pd.DataFrame(y, index=meta.index), metadata=meta, design="~condition", quiet=True)
    dds.fit_size_factors(fit_type="poscounts")
    np.testing.assert_allclose(sf, dds.obs["size_factors"].to_numpy(), rtol=1e-10)


def test_lowess_equals_pydeseq2():
    """The vectorised lowess of the independent filtering is pyDESeq2's, row by row (incl. a zero residual scale)."""
    from pydeseq2.utils import lowess as reference

    from sclens.tl._annotation._de_fast import lowess

    rng = np.random.default_rng(0)
    y = np.cumsum(rng.poisson(20, (4, 50)), axis=1)[:, ::-1].astype(float)
    y[1, 40:] = 0
    y[3] = 0
    y[3, [10, 30]] = [5, 3]
    theta = np.linspace(0.2, 0.95, 50)
    for row, want in zip(lowess(y), [reference(theta, r, frac=1 / 5) for r in y], strict=True):
        np.testing.assert_allclose(row, want, rtol=1e-8, atol=1e-8)


def test_dispersion_trend_without_fittable_genes_stays_finite():
    """A contrast whose genes all sit at the clip bounds (e.g. a handful of marker genes) keeps the start trend.

    Before, the fallback coefficients became (0, 1e-8): a zero trend for genes without counts, NaN
    ratios and divide-by-zero warnings (seen in the steering tutorial's three-gene-set contrast).
    """
    import warnings

    from sclens.tl._annotation._dispersion import MAX_DISP, MIN_DISP, dispersion_trend

    alpha = np.array([[MIN_DISP, MAX_DISP, np.nan, MIN_DISP], [0.1, 0.2, 0.05, 0.3]])
    mean = np.array([[0.0, 2.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trend = dispersion_trend(alpha, mean)
    assert np.isfinite(trend).all()
    np.testing.assert_allclose(
        trend[0], np.clip(0.1 + 1.0 / np.where(mean[0] > 0, mean[0], np.inf), MIN_DISP, MAX_DISP)
    )
    assert (trend[1] > MIN_DISP).all()


def _independent_filtering_reference(pvalue, base_mean, alpha=0.05):
    """The independent filtering before its rejection-count kernel: BH at all 50 cutoffs at once."""
    from sclens.tl._annotation._de_fast import _bh_above, chosen_cutoff, lowess

    padj = np.full(pvalue.shape, np.nan)
    rows = [c for c in range(pvalue.shape[0]) if (~np.isnan(pvalue[c])).any()]
    n_rej, by_cut = np.zeros((len(rows), 50)), []
    for r, c in enumerate(rows):
        p, base = pvalue[c], base_mean[c]
        lower = np.mean(base == 0)
        theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
        by_cut.append(_bh_above(p, ~np.isnan(p)[None, :] & (base[None, :] >= np.quantile(base, theta)[:, None])))
        n_rej[r] = (by_cut[-1] < alpha).sum(1)
    smooth = lowess(n_rej)
    for r, c in enumerate(rows):
        j = chosen_cutoff(n_rej[r], smooth[r])
        padj[c] = np.where(~np.isnan(pvalue[c]) & np.isnan(by_cut[r][j]), 1.0, by_cut[r][j])
    return padj


def test_independent_filtering_equals_bh_at_every_cutoff():
    """The rejection-count kernel gives the padj of BH computed at all 50 cutoffs, to the last bit.

    Contrasts with many or few small p-values (the chosen cutoff moves), tied p-values and base means,
    untested genes (NaN) and genes with base mean 0, and a contrast without any tested gene.
    """
    rng = np.random.default_rng(6)
    n_c, n_g = 40, 3000
    base = np.round(rng.lognormal(0.0, 2.0, (n_c, n_g)), 1) * (rng.random((n_c, n_g)) > 0.2)
    signal = rng.random((n_c, n_g)) < rng.uniform(0.0, 0.3, (n_c, 1))
    # tied p-values on a grid, so BH's step-up matters (a rank above alpha m / r with a later one below it)
    p = np.where(
        signal, 10.0 ** -np.round(rng.uniform(1.5, 6, (n_c, n_g)) + base / 10, 1), np.round(rng.random((n_c, n_g)), 3)
    )
    p[rng.random((n_c, n_g)) < 0.1] = np.nan
    p[3] = np.nan
    want = _independent_filtering_reference(p, base)
    got = independent_filtering(p, base)
    np.testing.assert_array_equal(got, want)
    assert ((want < 0.05).sum(1) > 10).sum() > 10  # most contrasts call genes, so the cutoff choice matters
    from sclens.tl._annotation._de_fast import _bh_above, _rejections

    n_step_up = 0
    for c in range(n_c):  # the kernel's counts at each cutoff are those of BH at that cutoff
        cuts = np.quantile(base[c], np.linspace(np.mean(base[c] == 0), 0.95, 50))
        masks = ~np.isnan(p[c])[None, :] & (base[c][None, :] >= cuts[:, None])
        order, counts = np.argsort(np.where(np.isnan(p[c]), np.inf, p[c])), np.zeros(50)
        _rejections()(p[c][order], base[c][order], cuts, 0.05, counts)
        np.testing.assert_array_equal(counts, (_bh_above(p[c], masks) < 0.05).sum(1))
        m = masks.sum(1)[:, None]
        ranked = np.sort(np.where(masks, p[c][None, :], np.inf), axis=1) * m / np.arange(1, p.shape[1] + 1)
        n_step_up += int(((ranked < 0.05).sum(1) != counts).sum())  # ranks above the line before one below it
    assert n_step_up > 0


def test_dispersions_option_reaches_the_engine_and_the_null(toy_annot_copy, monkeypatch):
    """``dispersions=``: the estimator the engine runs (the count histogram built only for ``"floored"``), recorded
    in ``params``, repeated by the null; both find the planted programs; a bad value fails before anything is written.
    """
    ad = toy_annot_copy
    gs = ad.uns["toy"]["gene_sets"]
    seen = []
    real = _engines.nb_dispersions
    monkeypatch.setattr(
        _engines, "nb_dispersions", lambda *a, **k: seen.append((k["estimator"], a[3] is not None)) or real(*a, **k)
    )
    stats_ = {}
    for disp in ("moments", "floored"):
        sl.tl.annotate_features(ad, gene_sets=gs, layer="counts", features=[0, 1, 2], dispersions=disp, return_de=[0],
                                key_added=f"go_{disp}")  # fmt: skip
        assert ad.uns[f"go_{disp}"]["params"]["dispersions"] == disp
        assert ad.uns["sae"]["features"]["best_term"].iloc[:3].tolist() == ["program_00", "program_01", "program_02"]
        stats_[disp] = ad.uns[f"go_{disp}"]["de"]["0"]["stat"].to_numpy()
    assert set(seen) == {("moments", False), ("floored", True)}
    assert not np.allclose(stats_["moments"], stats_["floored"])  # another estimator, other statistics
    seen.clear()
    sl.tl.annotation_null(ad, gene_sets=gs, annotation_key="go_floored", n_permutations=1, nulls=("cells",))
    assert set(seen) == {("floored", True)}
    before = set(ad.uns)
    with pytest.raises(ValueError, match="dispersions must be 'moments' or 'floored', got 'pydeseq2'"):
        sl.tl.annotate_features(ad, gene_sets=gs, layer="counts", dispersions="pydeseq2")
    assert set(ad.uns) == before


def test_group_mean_of_a_floored_group_is_its_closed_form_root():
    """Counts so low that every fitted mean is below ``MIN_MU``: the IRLS fixed point is linear in ``b``, with the
    exact root ``b* = mean_i log(MIN_MU / s_i) - 1 + sum(y) / (MIN_MU n)``. The solver reaches it to rounding
    (it once bisected away from an exact Newton step: 36 steps, 5e-11 off).
    """
    from sclens.tl._annotation._de_fast import MIN_MU, group_means

    centres = np.linspace(0.99, 1.005, 16)
    nbin = np.array([[74, 62, 60, 62, 67, 56, 60, 72, 58, 70, 55, 58, 60, 65, 64, 57]] * 3, dtype=float)
    y = np.array([[35.0, 108.0, 0.0]] * 3)
    z = y / 1.0  # size factors ~1
    n = nbin.sum(1)
    group = Group(n, nbin, 1 / (nbin @ centres / n), y, z, z)
    alpha = np.full(y.shape, 2.0)
    b, _ = group_means(group, centres, alpha)
    root = (nbin @ np.log(MIN_MU / centres))[:, None] / n[:, None] - 1 + y / (MIN_MU * n[:, None])
    assert (centres.max() * np.exp(root) < MIN_MU).all()  # every cell floored at the root
    np.testing.assert_allclose(b, root, rtol=0, atol=1e-13)


def test_deseq2_fit_min_mu_reaches_pydeseq2():
    """``min_mu`` (benchmarks' single-cell reference, DESeq2's ``minmu = 1e-6``) is pyDESeq2's floor on the means."""
    rng = np.random.default_rng(0)
    y = rng.negative_binomial(2, 0.5, size=(40, 30))
    y[:20, :5] = 0  # genes silent in the high cells: the floor matters
    genes = pd.Index([f"g{j}" for j in range(y.shape[1])])
    default, single_cell = (deseq2_fit(y, 20, genes, min_mu=m) for m in (0.5, 1e-6))
    assert (default.dds.min_mu, single_cell.dds.min_mu) == (0.5, 1e-6)
    assert not np.allclose(default.results_df["stat"].iloc[:5], single_cell.results_df["stat"].iloc[:5])

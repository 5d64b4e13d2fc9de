"""Batched negative-binomial Wald test for many two-group contrasts at once: pyDESeq2's model.

The model is pyDESeq2's ``~condition`` NB GLM, ``y_ij ~ NB(s_i mu_gj, alpha_j)`` for cell ``i``,
gene ``j`` and group ``g`` (high / low), fitted for all contrasts together from group sums:

* size factors ``s_i``: DESeq2's ``poscounts`` median of ratios, with the genes' mean log counts
  taken once over (a sample of) all cells (:meth:`~sclens.tl._annotation._de.Expression.scan`), so no
  composition effect: a few very high genes in the high cells do not make every other gene look
  down-regulated (library sizes did);
* dispersions ``alpha_cj``: per contrast ``c``, on its own cells with the two-group design
  (:mod:`~sclens.tl._annotation._dispersion`);
* group means: pyDESeq2's IRLS fit, whose fitted means are floored at ``min_mu = 0.5`` per cell,
  solved to its fixed point per group (:func:`group_means`); a group without counts gets a finite,
  small mean, as in pyDESeq2 (no pseudo count);
* Wald statistic from the Fisher information at the fitted (unfloored) means, two-sided normal
  p-values, and pyDESeq2's independent filtering on the base mean (:func:`independent_filtering`).

Sums over cells run over ``N_BINS`` quantile bins of the size factors (``nbin``: cells per bin and
contrast, ``centres``: mean size factor per bin), and ``sum_i y_i f(s_i)`` over a group is taken at its
expectation ``sum(y) * sum_i s_i f(s_i) / sum_i s_i``.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import sparse, stats

from ..._stats import fdr_bh
from ._dispersion import Group
from ._types import DEResult

N_BINS = 16  # size-factor quantile bins used for sums over cells
MIN_MU = 0.5  # pyDESeq2's floor on fitted means in its IRLS (``min_mu``)
FILTER_ALPHA = 0.05  # pyDESeq2's ``DeseqStats(alpha=0.05)``, the FDR its independent filtering maximises at


def size_bins(size_factors: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin of every cell's size factor and the mean size factor of each bin."""
    edges = np.unique(np.quantile(size_factors, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, size_factors, side="right")
    centres = np.bincount(bins, weights=size_factors) / np.maximum(np.bincount(bins), 1)
    return bins, centres


def bin_onehot(bins: np.ndarray, n_bins: int) -> sparse.csr_matrix:
    """Cells x bins indicator matrix."""
    n = bins.size
    return sparse.csr_matrix((np.ones(n), (np.arange(n), bins)), shape=(n, n_bins))


def group_means(g: Group, centres: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pyDESeq2's fitted log mean ``b`` of one group and its Fisher information, per contrast and gene.

    pyDESeq2's IRLS (two-group design: one intercept per group) iterates with fitted means ``mu_i =
    max(s_i e^b, MIN_MU)``; its fixed point solves ``f(b) = sum_floored W_i (log(MIN_MU / s_i) - b) + sum_i
    (y_i - mu_i) / (1 + alpha mu_i) = 0`` with ``W_i = mu_i / (1 + alpha mu_i)``. ``f`` decreases in ``b``;
    it is solved by safeguarded Newton steps. For a well-expressed gene no cell is floored and ``b`` is
    the NB maximum-likelihood mean; for a gene with few counts the floor pulls the means of both groups
    towards ``log(MIN_MU / s)``, so its fold change stays small (pyDESeq2's behaviour, not a pseudo
    count). The information is ``sum_i m_i / (1 + alpha m_i)`` at the unfloored ``m_i = s_i e^b``, as
    in pyDESeq2's Wald test. Genes without counts in either group are left to the caller.
    """
    shape = g.y.shape
    b, info = np.empty(shape), np.empty(shape)
    _solve()(g.y, g.z, g.nbin.astype(np.float64), np.asarray(centres, dtype=np.float64), alpha, MIN_MU, b, info)
    return b, info


@functools.cache
def _score():
    """Return the numba function ``(f(b), f'(b))`` of :func:`group_means` for one group, contrast and gene."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def score(b, a, y, z, nbin, centres, log_floor, ns, min_mu):  # pragma: no cover - compiled
        f, df = 0.0, 0.0
        sw, swu, swuu, swh, swuh = 0.0, 0.0, 0.0, 0.0, 0.0
        eb = np.exp(b)
        for k in range(centres.size):
            n, s = nbin[k], centres[k]
            if n == 0:
                continue
            m = s * eb
            mu = max(m, min_mu)
            h = 1.0 / (1.0 + a * mu)
            if m < min_mu:  # floored: mu = min_mu does not move with b
                f += n * mu * h * (log_floor[k] - b - 1.0)
                df -= n * mu * h
            else:
                f -= n * m * h
                df -= n * m * h * h * (1.0 + a * y * s / ns)
            # sum_i y_i h(s_i) from sum(y) and sum(y / s): h ~ p + q / s, least squares over the bins
            w, u = n * s, 1.0 / s
            sw, swu, swuu, swh, swuh = sw + w, swu + w * u, swuu + w * u * u, swh + w * h, swuh + w * u * h
        det = sw * swuu - swu * swu
        if det > 1e-12 * sw * swuu:
            f += ((swuu * swh - swu * swuh) * y + (sw * swuh - swu * swh) * z) / det
        else:  # one size factor: exact
            f += y * swh / sw
        return f, df

    return score


@functools.cache
def _solve():
    """Return the numba kernel of :func:`group_means`: safeguarded Newton steps on :func:`_score`."""
    import numba

    score = _score()

    @numba.njit(cache=True, nogil=True)
    def kernel(ysum, zsum, nbin, centres, alpha, min_mu, b_out, info_out):  # pragma: no cover - compiled
        log_floor = np.log(min_mu / centres)  # log(MIN_MU / s) of each bin
        for c in range(ysum.shape[0]):
            ns = 0.0
            for k in range(centres.size):
                ns += nbin[c, k] * centres[k]
            for j in range(ysum.shape[1]):
                a, lo, hi = alpha[c, j], -40.0, 40.0
                b = np.log(max(ysum[c, j], min_mu) / ns)  # closed form (the MLE without the floor)
                for _ in range(60):
                    f, df = score(b, a, ysum[c, j], zsum[c, j], nbin[c], centres, log_floor, ns, min_mu)
                    lo, hi = (b, hi) if f > 0 else (lo, b)
                    new = b - f / df if df < 0 else 0.5 * (lo + hi)
                    new = new if lo <= new <= hi else 0.5 * (lo + hi)  # kept on an end: f rounds to 0 there
                    done = abs(new - b) < 1e-10
                    b = new
                    if done:
                        break
                info, eb = 0.0, np.exp(b)
                for k in range(centres.size):
                    m = centres[k] * eb
                    info += nbin[c, k] * m / (1.0 + a * m)
                b_out[c, j], info_out[c, j] = b, info

    return kernel


def nb_wald(high: Group, low: Group, centres: np.ndarray, alpha: np.ndarray, *, filtering: bool = True) -> DEResult:
    """Wald test of ``log(mu_high / mu_low)`` per contrast (rows) and gene (columns).

    Means and information from :func:`group_means`; ``stat = (b_high - b_low) / sqrt(1 / I_high + 1 /
    I_low)``; two-sided normal p-values; adjusted p-values by pyDESeq2's independent filtering
    (:func:`independent_filtering`; ``filtering=False``: BH over all tested genes). Genes without any
    count in the contrast are not tested (NaN). ``base_mean``: mean of ``y / s`` over the contrast's cells.
    """
    tested = (high.y + low.y) > 0
    alpha = np.where(tested, np.nan_to_num(alpha, nan=1.0), 1.0)
    b_h, info_h = group_means(high, centres, alpha)
    b_l, info_l = group_means(low, centres, alpha)
    beta = b_h - b_l
    stat = beta / np.sqrt(1.0 / info_h + 1.0 / info_l)
    nan = np.where(tested, 1.0, np.nan)
    pvalue = 2.0 * stats.norm.sf(np.abs(stat)) * nan
    base = (high.z + low.z) / (high.n + low.n)[:, None]
    padj = independent_filtering(pvalue, base) if filtering else fdr_bh(pvalue)
    return DEResult(beta / np.log(2) * nan, stat * nan, pvalue, padj, base)


def independent_filtering(pvalue: np.ndarray, base_mean: np.ndarray, *, alpha: float = FILTER_ALPHA) -> np.ndarray:
    """pyDESeq2's independent filtering, per contrast (row): BH only above a base-mean cutoff.

    As ``DeseqStats._independent_filtering``: 50 cutoffs at base-mean quantiles from the share of genes
    with base mean 0 to 0.95; the number of genes at BH ``padj < alpha`` above each cutoff is smoothed
    by pyDESeq2's lowess (``frac=1/5``, :func:`lowess`); the first cutoff whose count exceeds the smooth's
    maximum less the residuals' root mean square is used (the lowest one when no count exceeds 10).
    Tested genes below the cutoff get ``padj = 1`` (pyDESeq2: NaN; they are tested, just not called).
    """
    padj = np.full(pvalue.shape, np.nan)
    rows = [c for c in range(pvalue.shape[0]) if (~np.isnan(pvalue[c])).any()]
    n_rej, cuts = np.zeros((len(rows), 50)), np.zeros((len(rows), 50))
    for r, c in enumerate(rows):
        p, base = pvalue[c], base_mean[c]
        lower = np.mean(base == 0)
        cuts[r] = np.quantile(base, np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50))
        order = np.argsort(np.where(np.isnan(p), np.inf, p))
        _rejections()(p[order], base[order], cuts[r], alpha, n_rej[r])
    smooth = lowess(n_rej)  # theta is evenly spaced: the smooth does not depend on its values
    for r, c in enumerate(rows):
        j = chosen_cutoff(n_rej[r], smooth[r])
        tested = ~np.isnan(pvalue[c])
        q = _bh_above(pvalue[c], (tested & (base_mean[c] >= cuts[r, j]))[None, :])[0]
        padj[c] = np.where(tested & np.isnan(q), 1.0, q)
    return padj


def chosen_cutoff(n_rej: np.ndarray, smooth: np.ndarray) -> int:
    """Return pyDESeq2's choice among the cutoffs of one contrast.

    The first cutoff whose rejections exceed the smooth's maximum less the residuals' root mean square;
    the lowest cutoff when no count exceeds 10.
    """
    if n_rej.max() <= 10:
        return 0
    hit = n_rej > 0
    above = np.flatnonzero(n_rej > smooth.max() - np.sqrt(np.mean((n_rej[hit] - smooth[hit]) ** 2)))
    return int(above[0]) if above.size else 0


@functools.cache
def _rejections():
    """Return the numba kernel counting, per base-mean cutoff, the genes at BH ``padj < alpha`` above it.

    ``p`` / ``base``: one contrast's p-values (increasing, NaN last) and base means in that order. Above
    cutoff ``t`` (``m`` tested genes with ``base >= t``), a gene of rank ``r`` has ``padj < alpha`` exactly
    when some rank ``r' >= r`` has ``p m / r' < alpha`` (the BH step-up), so the count is the largest such
    rank: the number :func:`_bh_above` gives, without its cutoffs x genes arrays.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(p, base, cuts, alpha, out):  # pragma: no cover - compiled
        for j in range(cuts.size):
            m = 0
            for i in range(p.size):
                m += not np.isnan(p[i]) and base[i] >= cuts[j]
            rank, best = 0, 0
            for i in range(p.size):
                if not np.isnan(p[i]) and base[i] >= cuts[j]:
                    rank += 1
                    if p[i] * m / rank < alpha:
                        best = rank
            out[j] = best

    return kernel


def lowess(y: np.ndarray, *, frac: float = 1 / 5, n_iter: int = 3) -> np.ndarray:
    """pyDESeq2's robust lowess (``pydeseq2.utils.lowess``) of every row of ``y`` at evenly spaced points."""
    n = y.shape[1]
    x = np.arange(n, dtype=float)
    dist = np.abs(x[:, None] - x[None, :])
    h = np.maximum(np.sort(dist, axis=0)[int(np.ceil(frac * n))], 1e-12)
    w = (1 - np.clip(dist / h[None, :], 0.0, 1.0) ** 3) ** 3  # w[j, i]: weight of point j in the fit at i
    delta = np.ones_like(y, dtype=float)
    for _ in range(n_iter):
        wt = delta[:, :, None] * w[None]
        s0, s1, s2 = wt.sum(1), (wt * x[None, :, None]).sum(1), (wt * (x**2)[None, :, None]).sum(1)
        t0, t1 = (wt * y[:, :, None]).sum(1), (wt * (y * x)[:, :, None]).sum(1)
        det = s0 * s2 - s1**2
        ok = np.abs(det) > 1e-12 * np.maximum(s0 * s2, 1e-300)
        slope = np.where(ok, (s0 * t1 - s1 * t0) / np.where(ok, det, 1.0), 0.0)
        est = np.where(ok, (t0 - slope * s1) / np.maximum(s0, 1e-300) + slope * x, t0 / np.maximum(s0, 1e-300))
        resid = y - est
        scale = np.median(np.abs(resid), axis=1, keepdims=True)
        u = np.where(scale > 0, np.clip(resid / (6.0 * np.where(scale > 0, scale, 1.0)), -1, 1), (resid != 0) * 1.0)
        delta = (1 - u**2) ** 2
    return est


def _bh_above(p: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """BH-adjusted ``p`` within each row's subset of genes ``masks`` (cutoffs x genes); NaN outside it."""
    order = np.argsort(np.where(np.isnan(p), np.inf, p))
    ps, ms = p[order][None, :], masks[:, order]
    rank = np.cumsum(ms, axis=1)
    q = np.where(ms, ps * rank[:, -1:] / np.maximum(rank, 1), np.inf)
    q = np.minimum(np.minimum.accumulate(q[:, ::-1], axis=1)[:, ::-1], 1.0)
    out = np.full(masks.shape, np.nan)
    out[:, order] = np.where(ms, q, np.nan)
    return out

"""Per-contrast negative-binomial dispersions: within-group moments, or pyDESeq2's steps floored at them.

Every contrast (one SAE feature's high vs low cells) gets its own gene dispersions, estimated on its
own cells with the two-group design, so that the difference between the groups (a cell-type marker
between a feature's cells and the others) is not counted as noise. Everything is vectorised over
contrasts (rows) and genes (columns); the inputs are group sums and, for the maximum likelihood, a
histogram of the counts of each contrast's cells, from one pass over the counts
(:meth:`sclens.tl._annotation._de.Expression.scan`). The default (``"moments"`` of
:func:`nb_dispersions`) shrinks the pooled within-group moment estimates towards their trend;
``"floored"`` runs pyDESeq2's gene-wise MLE, trend and MAP and keeps every dispersion at least at the
moment estimate, so that the model's variance is never below the variance observed within the groups
(``docs/differential_expression.md``).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

MIN_DISP, MAX_DISP = 1e-8, 10.0
MIN_MU = 0.5  # pyDESeq2's floor on the fitted means (``min_mu``)
SC_MIN_MU = 1e-6  # DESeq2's recommended ``minmu`` for single cells: the floored estimator's floor on the means
#: counts 1 .. EXACT - 1 are counted exactly per contrast and gene, larger ones in the log2 bins starting at TAIL
EXACT = 8
TAIL = np.array([8, 16, 32, 64, 128, 256], dtype=np.float64)
#: histogram columns: cells with count 1 .. EXACT - 1, then (cells, sum of counts, sum of squares) of every tail bin
N_HIST = EXACT - 1 + 3 * TAIL.size


@dataclass
class Group:
    """One side (high or low) of every contrast: sums over its cells, contrasts x genes unless noted.

    ``n``: cells (contrasts); ``nbin``: cells per size-factor bin (contrasts x bins); ``inv_s``: mean
    ``1 / s`` over its cells (contrasts); ``y`` / ``z`` / ``z2``: sums of ``y``, ``y / s`` and ``(y / s)^2``.
    """

    n: np.ndarray
    nbin: np.ndarray
    inv_s: np.ndarray
    y: np.ndarray
    z: np.ndarray
    z2: np.ndarray


def hist_codes(y: np.ndarray) -> np.ndarray:
    """Histogram column of every stored value ``y`` rounded to a count ``k`` (-1 for ``k = 0``: not counted).

    ``k - 1`` below ``EXACT``, else its tail bin's cell column; a tail count adds 1 to its column, ``k`` to
    the next and ``k^2`` to the one after (:func:`count_histogram`). Values are rounded so that a model's
    predicted expression (``model=``) has a histogram too.
    """
    k = np.rint(y)
    tail = EXACT - 1 + 3 * (np.searchsorted(TAIL, k, side="right") - 1)
    return np.where(k < EXACT, k - 1, tail).astype(np.int64)


def count_histogram(y: np.ndarray) -> np.ndarray:
    """Histogram (genes x ``N_HIST``) of the counts of one contrast's cells, ``y`` dense (cells x genes)."""
    out = np.zeros((y.shape[1], N_HIST))
    cells, genes = np.nonzero(np.rint(y))
    vals = np.rint(y[cells, genes]).astype(np.float64)
    codes = hist_codes(vals)
    np.add.at(out, (genes, codes), 1.0)
    tail = codes >= EXACT - 1
    np.add.at(out, (genes[tail], codes[tail] + 1), vals[tail])
    np.add.at(out, (genes[tail], codes[tail] + 2), vals[tail] ** 2)
    return out


def moment_dispersions(high: Group, low: Group) -> np.ndarray:
    """Gene-wise dispersions by pooled within-group moments of ``z = y / s`` (NaN for genes without counts).

    Under the model ``Var(z_i) = mu_g / s_i + alpha mu_g^2`` within group ``g``, so ``alpha = (sum_g SS_g -
    sum_g (n_g - 1) zbar_g mean_g(1/s)) / sum_g (n_g - 1) zbar_g^2`` with ``SS_g`` the within-group sum of
    squares; clipped to ``[MIN_DISP, MAX_DISP]``.
    """
    num = np.zeros_like(high.z)
    den = np.zeros_like(high.z)
    for g in (high, low):
        n = g.n[:, None].astype(float)
        zbar = g.z / n
        ss = np.maximum(g.z2 - n * zbar**2, 0.0)
        num += ss - (n - 1) * zbar * g.inv_s[:, None]
        den += (n - 1) * zbar**2
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(den > 0, num / den, np.nan)
    return np.clip(alpha, MIN_DISP, MAX_DISP)


def rough_dispersions(high: Group, low: Group) -> np.ndarray:
    """pyDESeq2's start of the gene-wise fit (``_fit_MoM_dispersions``), per contrast and gene (NaN: no counts).

    The smaller of its *rough* estimate, ``max(0, sum_i ((z_i - f_i)^2 - f_i) / f_i^2 / (n - 2))`` with
    ``f_i = max(zbar_g, 1)`` the two-group fit of ``z = y / s``, and its *moments* estimate over all the
    contrast's cells, ``(var(z) - mean(1/s) mean(z)) / mean(z)^2`` (0 where undefined); clipped to
    ``[MIN_DISP, max_dispersion]``. Both come from the group sums of ``z`` and ``z^2``.
    """
    n = (high.n + low.n).astype(float)[:, None]
    rde = np.zeros_like(high.z)
    for g in (high, low):
        ng = g.n[:, None].astype(float)
        f = np.maximum(g.z / np.maximum(ng, 1), 1.0)
        rde += (g.z2 - 2 * f * g.z + ng * f**2 - ng * f) / f**2
    rde = np.maximum(rde / np.maximum(n - 2, 1), 0.0)
    mean = (high.z + low.z) / n
    var = (high.z2 + low.z2 - n * mean**2) / np.maximum(n - 1, 1)
    inv_s = ((high.n * high.inv_s + low.n * low.inv_s)[:, None]) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        mde = np.nan_to_num((var - inv_s * mean) / mean**2)
    alpha = np.clip(np.minimum(rde, mde), MIN_DISP, max_dispersion(high, low))
    return np.where(high.y + low.y > 0, alpha, np.nan)


def max_dispersion(high: Group, low: Group) -> np.ndarray:
    """pyDESeq2's upper bound on the dispersions, ``max(MAX_DISP, n)`` for a contrast of ``n`` cells (contrasts x 1)."""
    return np.maximum(MAX_DISP, high.n + low.n).astype(np.float64)[:, None]


def mle_dispersions(
    high: Group,
    low: Group,
    centres: np.ndarray,
    hist: np.ndarray,
    start: np.ndarray,
    *,
    prior_mean: np.ndarray | None = None,
    prior_var: np.ndarray | None = None,
    skip: np.ndarray | None = None,
    min_mu: float = MIN_MU,
) -> np.ndarray:
    """pyDESeq2's NB maximum-likelihood dispersions (``fit_alpha_mle``), per contrast and gene.

    Minimises over ``log alpha`` in ``[log MIN_DISP, log max_dispersion]`` the NB negative log-likelihood
    of the contrast's cells with the means pyDESeq2 uses for its dispersions, ``mu_i = max(s_i zbar_g,
    MIN_MU)`` (``zbar_g``: the group's mean of ``y / s``), plus the Cox-Reid term ``1/2 log det(X' W X) =
    1/2 sum_g log sum_{i in g} mu_i / (1 + alpha mu_i)`` of the two-group design; with ``prior_mean`` /
    ``prior_var`` (contrasts x genes / contrasts x 1) also the MAP prior ``(log alpha - log prior_mean)^2 /
    (2 prior_var)`` (``fit_MAP_dispersions``). The counts enter through ``hist`` (contrasts x genes x
    ``N_HIST``, :func:`hist_codes`): ``sum_i log Gamma(y_i + 1/alpha) - log Gamma(1/alpha)`` is exact for
    counts below ``EXACT``; above, its derivative ``sum_i digamma(y_i + 1/alpha)`` is taken per log2 tail bin
    at the bin's mean count with the second-order term of its variance (0.01 % off); ``sum_i y_i
    f(s_i)`` is taken from the sums of ``y`` and ``y / s`` as in :func:`~sclens.tl._annotation._de_fast.group_means`.
    Safeguarded Newton steps from ``start`` to the minimum; NaN for genes without counts and where
    ``skip`` (contrasts x genes, bool) is set. ``min_mu``: the floor on the means (pyDESeq2's default;
    DESeq2 recommends ``1e-6`` for single cells).
    """
    shape = high.y.shape
    out = np.full(shape, np.nan)
    has_prior = prior_mean is not None
    t0 = np.log(prior_mean) if has_prior else np.zeros(shape)
    pv = np.broadcast_to(prior_var, (shape[0], 1)).astype(np.float64) if has_prior else np.ones((shape[0], 1))
    bound = np.log(max_dispersion(high, low))
    sums = np.stack([high.y, high.z, low.y, low.z]).astype(np.float64)
    nbins = [np.asarray(g.nbin, dtype=np.float64) for g in (high, low)]
    t_start = np.log(np.clip(np.nan_to_num(start, nan=0.1), MIN_DISP, np.exp(bound)))
    fit = np.ones(shape, dtype=np.bool_) if skip is None else ~np.broadcast_to(skip, shape)
    _mle()(
        np.ascontiguousarray(hist), sums, *nbins, np.asarray(centres, dtype=np.float64), t_start, t0, pv[:, 0],
        bound[:, 0], has_prior, TAIL.size, np.ascontiguousarray(fit), float(min_mu), out,
    )  # fmt: skip
    return out


@functools.cache
def _polygamma():
    """Return numba ``digamma``, ``trigamma`` and ``tetragamma`` (recurrence up to 6, then asymptotic series)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def digamma(x):  # pragma: no cover - compiled
        acc = 0.0
        while x < 6.0:
            acc -= 1.0 / x
            x += 1.0
        x2 = 1.0 / (x * x)
        return acc + np.log(x) - 0.5 / x - x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 / 252))

    @numba.njit(cache=True, nogil=True)
    def trigamma(x):  # pragma: no cover - compiled
        acc = 0.0
        while x < 6.0:
            acc += 1.0 / (x * x)
            x += 1.0
        x2 = 1.0 / (x * x)
        return acc + 1.0 / x + 0.5 * x2 + x2 / x * (1.0 / 6 - x2 * (1.0 / 30 - x2 * (1.0 / 42 - x2 / 30)))

    @numba.njit(cache=True, nogil=True)
    def tetragamma(x):  # pragma: no cover - compiled
        acc = 0.0
        while x < 6.0:
            acc -= 2.0 / (x * x * x)
            x += 1.0
        x2 = 1.0 / (x * x)
        return acc - x2 - x2 / x - x2 * x2 * (0.5 - x2 * (1.0 / 6 - x2 * (1.0 / 6 - x2 * 0.3)))

    return digamma, trigamma, tetragamma


@functools.cache
def _derivs():
    """Return the numba function: first and (nearly) second derivative in ``t = log alpha`` of the objective.

    The objective of :func:`mle_dispersions` for one contrast and gene: ``-A(r) + sum_i (y_i + r) log(r +
    mu_i) - n r log r`` (``r = 1 / alpha``, ``A(r) = sum_i log Gamma(y_i + r) - log Gamma(r)`` from the count
    histogram) plus the Cox-Reid term and, with ``has_prior``, the MAP prior. The second derivative
    leaves out the tail bins' variance term (Newton steps stay safeguarded).
    """
    import numba

    digamma, trigamma, tetragamma = _polygamma()
    exact = EXACT

    @numba.njit(cache=True, nogil=True)
    def derivs(t, gene, bins, has_prior, t0, pv):  # pragma: no cover - compiled
        above, tail_n, tail_y, tail_v = gene
        n_k, m_k, yh_k, grp_k = bins
        a = np.exp(t)
        r = 1.0 / a
        g, h = 0.0, 0.0  # d/dr and d2/dr2 of the NB negative log-likelihood
        for k in range(exact):  # A(r) = sum_k #(y > k) log(r + k) up to the tail
            if above[k] > 0:
                q = r + k
                g -= above[k] / q
                h += above[k] / (q * q)
        for b in range(tail_n.size):  # tail bins: digamma at the mean count, second-order variance term
            if tail_n[b] > 0:
                x = tail_y[b] + r
                g -= tail_n[b] * (digamma(x) - digamma(exact + r) + 0.5 * tail_v[b] * tetragamma(x))
                h -= tail_n[b] * (trigamma(x) - trigamma(exact + r))
        s, ds, dds = np.zeros(2), np.zeros(2), np.zeros(2)
        for k in range(n_k.size):  # size-factor bins of both groups: sum_i (y_i + r) log(r + mu_i) - n r log r
            n, m, yh = n_k[k], m_k[k], yh_k[k]
            q = r + m
            g += n * (np.log1p(m / r) - m / q) + yh / q
            h -= n * m * m / (r * q * q) + yh / (q * q)
            w = 1.0 / (1.0 + a * m)
            s[grp_k[k]] += n * m * w
            ds[grp_k[k]] -= n * m * m * w * w
            dds[grp_k[k]] += 2.0 * n * m * m * m * w * w * w
        c1, c2 = 0.0, 0.0  # Cox-Reid 1/2 sum_g log s_g: derivatives in alpha
        for j in range(2):
            if s[j] > 0:
                c1 += 0.5 * ds[j] / s[j]
                c2 += 0.5 * (dds[j] / s[j] - (ds[j] / s[j]) ** 2)
        ft = -r * g + a * c1
        ftt = r * r * h + r * g + a * a * c2 + a * c1
        if has_prior:
            ft += (t - t0) / pv
            ftt += 1.0 / pv
        return ft, ftt

    return derivs


@functools.cache
def _layout():
    """Return the numba function: a contrast's occupied size-factor bins and how a group's ``sum y`` spreads on them.

    ``sum_i y_i f(s_i)`` over a group is ``sum_k (coef_k0 Y + coef_k1 Z) f(c_k)``: the least-squares fit
    ``f ~ p + q / s`` over the bins (weights ``n_k c_k``) of :func:`~sclens.tl._annotation._de_fast.group_means`.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def layout(nbin_h, nbin_l, centres):  # pragma: no cover - compiled
        nb = centres.size
        n_k, c_k, coef = np.empty(2 * nb), np.empty(2 * nb), np.empty((2 * nb, 2))
        grp_k = np.empty(2 * nb, dtype=np.int64)
        n_act = 0
        for gi in range(2):
            nbin = nbin_h if gi == 0 else nbin_l
            sw, swu, swuu = 0.0, 0.0, 0.0
            for k in range(nb):
                if nbin[k] > 0:
                    w, u = nbin[k] * centres[k], 1.0 / centres[k]
                    sw, swu, swuu = sw + w, swu + w * u, swuu + w * u * u
            det = sw * swuu - swu * swu
            for k in range(nb):
                if nbin[k] > 0:
                    w, u = nbin[k] * centres[k], 1.0 / centres[k]
                    n_k[n_act], c_k[n_act], grp_k[n_act] = nbin[k], centres[k], gi
                    if det > 1e-12 * sw * swuu:
                        coef[n_act, 0], coef[n_act, 1] = w * (swuu - swu * u) / det, w * (sw * u - swu) / det
                    else:  # one size factor: exact
                        coef[n_act, 0], coef[n_act, 1] = w / sw, 0.0
                    n_act += 1
        return n_k[:n_act], c_k[:n_act], coef[:n_act], grp_k[:n_act]

    return layout


@functools.cache
def _mle():
    """Return the numba kernel of :func:`mle_dispersions`: safeguarded Newton steps on :func:`_derivs`."""
    import numba

    derivs, layout, exact = _derivs(), _layout(), EXACT

    @numba.njit(cache=True, nogil=True)
    def gene_hist(hj, n_tail):  # pragma: no cover - compiled
        """Cells with a count above ``k < EXACT``, and each tail bin's cells, mean count and variance."""
        above, tail_n, tail_y, tail_v = np.empty(exact), np.empty(n_tail), np.empty(n_tail), np.empty(n_tail)
        cum = 0.0
        for b in range(n_tail):
            nt = hj[exact - 1 + 3 * b]
            tail_n[b], tail_y[b] = nt, hj[exact + 3 * b] / max(nt, 1.0)
            tail_v[b] = max(hj[exact + 1 + 3 * b] / max(nt, 1.0) - tail_y[b] ** 2, 0.0)
            cum += nt
        above[exact - 1] = cum
        for k in range(exact - 2, -1, -1):
            cum += hj[k]
            above[k] = cum
        return above, tail_n, tail_y, tail_v

    @numba.njit(cache=True, nogil=True)
    def kernel(hist, sums, nbh, nbl, centres, start, t0, pv, bound, prior, n_tail, fit, mu0, out):  # pragma: no cover
        for c in range(sums.shape[1]):
            n_k, c_k, coef, grp_k = layout(nbh[c], nbl[c], centres)
            n_grp = np.zeros(2)
            for k in range(n_k.size):
                n_grp[grp_k[k]] += n_k[k]
            m_k, yh_k = np.empty(n_k.size), np.empty(n_k.size)
            for j in range(sums.shape[2]):
                if sums[0, c, j] + sums[2, c, j] <= 0 or not fit[c, j]:
                    continue
                for k in range(n_k.size):  # pyDESeq2's means for its dispersions: max(s_i zbar_g, MIN_MU)
                    gi = grp_k[k]
                    m_k[k] = max(c_k[k] * sums[2 * gi + 1, c, j] / n_grp[gi], mu0)
                    yh_k[k] = coef[k, 0] * sums[2 * gi, c, j] + coef[k, 1] * sums[2 * gi + 1, c, j]
                gene, bins = gene_hist(hist[c, j], n_tail), (n_k, m_k, yh_k, grp_k)
                lo, hi = np.log(1e-8), bound[c]
                t = min(max(start[c, j], lo), hi)
                for _ in range(60):  # Newton, bracketed by the sign of the derivative
                    ft, ftt = derivs(t, gene, bins, prior, t0[c, j], pv[c])
                    lo, hi = (lo, t) if ft > 0 else (t, hi)
                    new = t - ft / ftt if ftt > 0 else 0.5 * (lo + hi)
                    new = new if lo <= new <= hi else 0.5 * (lo + hi)
                    done = abs(new - t) < 1e-7 or hi - lo < 1e-7
                    t = new
                    if done:
                        break
                out[c, j] = np.exp(t)

    return kernel


def dispersion_trend(alpha: np.ndarray, mean: np.ndarray, *, n_iter: int = 20) -> np.ndarray:
    """DESeq2's parametric trend ``a0 + a1 / mean`` fitted per contrast (rows), as a gamma GLM.

    Identity-link gamma regression (weights ``1 / trend^2``) on the genes with an estimate strictly
    inside ``(100 MIN_DISP, MAX_DISP)``; as pyDESeq2, genes whose estimate is below ``1e-4`` or at least
    15 times the current trend are left out of the next iteration. Coefficients are kept >= 1e-8.
    """
    x = 1.0 / np.where(mean > 0, mean, np.inf)
    fit = np.isfinite(alpha) & (alpha > 100 * MIN_DISP) & (alpha < MAX_DISP) & (mean > 0)
    a = np.where(fit, alpha, 0.0)
    coef = np.tile([0.1, 1.0], (alpha.shape[0], 1))
    for _ in range(n_iter):
        trend = coef[:, :1] + coef[:, 1:] * x
        ratio = a / trend
        use = fit & (ratio >= 1e-4) & (ratio < 15)
        w = np.where(use, 1.0 / trend**2, 0.0)
        normal = np.stack(
            [np.stack([w.sum(1), (w * x).sum(1)], -1), np.stack([(w * x).sum(1), (w * x * x).sum(1)], -1)], -2
        )
        rhs = np.stack([(w * a).sum(1), (w * a * x).sum(1)], -1)
        ok = np.linalg.det(normal) > 1e-9 * normal[:, 0, 0] * normal[:, 1, 1]
        new = np.column_stack(
            [np.maximum((w * a).sum(1) / np.maximum(w.sum(1), 1e-300), 1e-8), np.full(len(coef), 1e-8)]
        )
        new[ok] = np.maximum(np.linalg.solve(normal[ok], rhs[ok][..., None])[..., 0], 1e-8)  # else: the mean
        new[w.sum(1) == 0] = coef[w.sum(1) == 0]  # no gene to fit (e.g. a handful of genes): keep the start
        done = np.allclose(new, coef, rtol=1e-6)
        coef = new
        if done:
            break
    return np.clip(coef[:, :1] + coef[:, 1:] * x, MIN_DISP, MAX_DISP)


#: dispersion estimators of :func:`nb_dispersions`
ESTIMATORS = ("floored", "pydeseq2", "moments")
#: those ``annotate_features(dispersions=)`` offers (``"pydeseq2"`` does not hold the null: ablations only)
DISPERSIONS = ("moments", "floored")


def _mad_prior(genewise: np.ndarray, trend: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pyDESeq2's spread of the log gene-wise values around the trend: MAD and prior variance (contrasts x 1).

    The MAD of the log residuals of the genes >= ``100 MIN_DISP``; the prior variance is its square minus
    ``trigamma((n - 2) / 2)`` for the contrast's ``n`` cells, at least 0.25.
    """
    resid = np.log(genewise) - np.log(trend)
    resid = np.where(np.isfinite(resid) & (genewise >= 100 * MIN_DISP), resid, np.nan)
    with warnings.catch_warnings():  # a contrast with no gene above the floor has no residuals: MAD 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = 1.4826 * np.nanmedian(np.abs(resid - np.nanmedian(resid, axis=1, keepdims=True)), axis=1)
    mad = np.nan_to_num(mad, nan=0.0)[:, None]
    return mad, np.maximum(mad**2 - special.polygamma(1, np.maximum(n - 2, 1) / 2)[:, None], 0.25)


def pydeseq2_dispersions(
    high: Group,
    low: Group,
    centres: np.ndarray,
    hist: np.ndarray,
    *,
    floor: np.ndarray | None = None,
    weight: float | None = None,
    min_mu: float = MIN_MU,
) -> dict[str, np.ndarray]:
    """pyDESeq2's dispersion steps for every contrast and gene: ``genewise``, ``trend``, ``mad``, ``map``, ``final``.

    1. ``genewise``: :func:`mle_dispersions` (Cox-Reid adjusted NB maximum likelihood) from pyDESeq2's
       start, :func:`rough_dispersions`; a gene whose start is at ``MIN_DISP`` (e.g. counts of 0 and 1
       only, whose rough estimate is negative) keeps ``MIN_DISP``, as pyDESeq2's L-BFGS-B, whose
       gradient in ``log alpha`` vanishes there, does;
    2. ``trend``: :func:`dispersion_trend` of the gene-wise values against the contrast's mean of ``y / s``;
    3. ``mad`` and the prior variance (per contrast, :func:`_mad_prior`);
    4. ``map``: :func:`mle_dispersions` with the log-normal prior centred on the trend;
    5. ``final``: the MAP, except *dispersion outliers* (log gene-wise more than 2 MADs above the
       trend), which keep their gene-wise value; with ``floor`` (contrasts x genes), at least ``floor``.
       The MAP lies between the gene-wise value and the trend, so it is not fitted (NaN in ``map``)
       where the floor is above both.

    ``weight`` replaces step 4 by a fixed weight ``w`` on the log gene-wise value, ``w log alpha + (1 - w)
    log trend`` (for ablations); ``min_mu``: the floor on the means of steps 1-4 (:func:`mle_dispersions`).
    """
    start = rough_dispersions(high, low)
    at_floor = start <= MIN_DISP
    genewise = np.where(
        at_floor, MIN_DISP, mle_dispersions(high, low, centres, hist, start, skip=at_floor, min_mu=min_mu)
    )
    n = (high.n + low.n).astype(float)
    trend = dispersion_trend(genewise, (high.z + low.z) / n[:, None])
    mad, prior_var = _mad_prior(genewise, trend, n)
    if weight is None:
        # a gene left at MIN_DISP has no fitted optimum: its MAP is always fitted
        skip = None if floor is None else ~at_floor & (floor >= np.maximum(genewise, trend))
        shrunk = mle_dispersions(
            high, low, centres, hist, trend, prior_mean=trend, prior_var=prior_var, skip=skip, min_mu=min_mu
        )
    else:
        shrunk = np.exp(weight * np.log(genewise) + (1 - weight) * np.log(trend))
    final = np.where(np.log(genewise) > np.log(trend) + 2 * mad, genewise, shrunk)
    if floor is not None:
        final = np.fmax(final, floor)
    return {"genewise": genewise, "trend": trend, "mad": mad, "map": shrunk, "final": final}


def shrunk_moment_dispersions(
    high: Group, low: Group, centres: np.ndarray, *, weight: float | None = None
) -> np.ndarray:
    """Moments (:func:`moment_dispersions`) shrunk towards their trend by a normal approximation of DESeq2's MAP.

    The log dispersion is the precision-weighted mean of the gene-wise and trend values, ``w = prior_var
    / (prior_var + sampling_var)`` on the gene-wise value. ``prior_var`` (per contrast) is pyDESeq2's
    (:func:`_mad_prior`). ``sampling_var`` is each gene's: the inverse Fisher information of its log
    dispersion in the Gaussian approximation of the count variance, ``1 / sum_i (alpha m_i / (1 + alpha
    m_i))^2 / 2`` over the contrast's cells (``m_i = s_i mu``, cells grouped in size-factor bins), which
    tends to DESeq2's ``trigamma((n - 2) / 2) ~ 2 / n`` for well-expressed genes and grows for genes with
    few counts. As DESeq2, *dispersion outliers* (log gene-wise estimate more than 2 MADs above the
    trend) keep their gene-wise value. ``weight`` fixes ``w`` instead (for ablations).
    """
    genewise = moment_dispersions(high, low)
    n = (high.n + low.n).astype(float)
    trend = dispersion_trend(genewise, (high.z + low.z) / n[:, None])
    mad, prior_var = _mad_prior(genewise, trend, n)
    if weight is None:
        info = np.zeros_like(genewise)
        for g in (high, low):
            mu = g.z / np.maximum(g.n, 1)[:, None]
            for b, s in enumerate(centres):
                am = genewise * s * mu
                info += g.nbin[:, b : b + 1] * 0.5 * (am / (1.0 + am)) ** 2
        with np.errstate(divide="ignore"):
            w = prior_var / (prior_var + 1.0 / info)
    else:
        w = weight
    shrunk = np.exp(w * np.log(genewise) + (1 - w) * np.log(trend))
    return np.where(np.log(genewise) > np.log(trend) + 2 * mad, genewise, shrunk)


def nb_dispersions(
    high: Group,
    low: Group,
    centres: np.ndarray,
    hist: np.ndarray | None = None,
    *,
    estimator: str = "moments",
    weight: float | None = None,
) -> np.ndarray:
    """Return per-contrast dispersions (contrasts x genes) by one of :data:`ESTIMATORS`.

    * ``"pydeseq2"``: pyDESeq2's (:func:`pydeseq2_dispersions`);
    * ``"floored"``: pyDESeq2's steps with DESeq2's single-cell floor on the means (``min_mu =
      SC_MIN_MU``), never below the gene's pooled within-group moment estimate
      (:func:`moment_dispersions`), the dispersion that makes the NB variance equal to the observed
      variance within the groups. The Wald test of a group mean is right when the variance is right;
      on cells that mix expressing and silent states (a program active in some cells) the NB
      likelihood fits the shape, not the variance, and its estimate is too small. pyDESeq2's floor
      of 0.5 gives a gene nearly silent in one group (a marker of a small population) a huge
      dispersion;
    * ``"moments"`` (the default of ``annotate_features``): the moment estimates shrunk towards their
      trend (:func:`shrunk_moment_dispersions`; ``hist`` unused). On real immune cells it keeps more
      of each type's markers and GO vocabulary than ``"floored"`` (``benchmarks/biology.py``).

    ``hist``: the count histogram of each contrast's cells (:attr:`~sclens.tl._annotation._de.Scan.hist`),
    needed by all but ``"moments"``.

    ``weight`` fixes the shrinkage weight on the log gene-wise value (for ablations).
    """
    if estimator == "moments":
        return shrunk_moment_dispersions(high, low, centres, weight=weight)
    if estimator in ESTIMATORS and hist is None:
        msg = f"estimator {estimator!r} needs the contrasts' count histogram (hist)."
        raise ValueError(msg)
    if estimator == "pydeseq2":
        return pydeseq2_dispersions(high, low, centres, hist, weight=weight)["final"]
    if estimator == "floored":
        floor = moment_dispersions(high, low)
        return pydeseq2_dispersions(high, low, centres, hist, floor=floor, weight=weight, min_mu=SC_MIN_MU)["final"]
    msg = f"estimator must be one of {ESTIMATORS}, got {estimator!r}."
    raise ValueError(msg)

"""Per-contrast negative-binomial dispersions from pooled within-group moments, shrunk as DESeq2's MAP.

Every contrast (one SAE feature's high vs low cells) gets its own gene dispersions, estimated on its
own cells with the two-group design, so that the difference between the groups (a cell-type marker
between a feature's cells and the others) is not counted as noise. Everything is vectorised over
contrasts (rows) and genes (columns); the inputs are group sums from one pass over the counts
(:meth:`sclens.tl._annotation._de.Expression.scan`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

MIN_DISP, MAX_DISP = 1e-8, 10.0


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


def nb_dispersions(high: Group, low: Group, centres: np.ndarray, *, weight: float | None = None) -> np.ndarray:
    """Return per-contrast dispersions: moments (:func:`moment_dispersions`) shrunk towards the trend.

    The log dispersion is the precision-weighted mean of the gene-wise and trend values, DESeq2's normal
    approximation of its maximum-a-posteriori estimate, ``w = prior_var / (prior_var + sampling_var)`` on
    the gene-wise value. ``prior_var`` (per contrast) is pyDESeq2's: the squared MAD of the log residuals
    from the trend minus ``trigamma((n - 2) / 2)`` for the contrast's ``n`` cells, at least 0.25.
    ``sampling_var`` is each gene's: the inverse Fisher information of its log dispersion in the
    Gaussian approximation of the count variance, ``1 / sum_i (alpha m_i / (1 + alpha m_i))^2 / 2`` over the
    contrast's cells (``m_i = s_i mu``, cells grouped in size-factor bins), which tends to DESeq2's
    ``trigamma((n - 2) / 2) ~ 2 / n`` for well-expressed genes and grows for genes with few counts,
    whose flat likelihood lets DESeq2's prior pull them to the trend. As DESeq2, *dispersion outliers*
    (log gene-wise estimate more than 2 MADs above the trend) keep their gene-wise value.

    ``weight`` fixes ``w`` instead (for ablations).
    """
    genewise = moment_dispersions(high, low)
    n = (high.n + low.n).astype(float)
    mean = (high.z + low.z) / n[:, None]
    trend = dispersion_trend(genewise, mean)
    resid = np.log(genewise) - np.log(trend)
    resid = np.where(np.isfinite(resid) & (genewise >= 100 * MIN_DISP), resid, np.nan)
    with warnings.catch_warnings():  # a contrast with no gene above the floor has no residuals: MAD 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = 1.4826 * np.nanmedian(np.abs(resid - np.nanmedian(resid, axis=1, keepdims=True)), axis=1)
    mad = np.nan_to_num(mad, nan=0.0)[:, None]
    prior_var = np.maximum(mad**2 - special.polygamma(1, np.maximum(n - 2, 1) / 2)[:, None], 0.25)
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
    outlier = np.log(genewise) > np.log(trend) + 2 * mad
    return np.where(outlier, genewise, shrunk)

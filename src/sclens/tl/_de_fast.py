"""Batched negative-binomial Wald test for many two-group contrasts at once.

Size factors and gene-wise dispersions are estimated once from all cells; the group sums of
every contrast come from one sparse product (see :meth:`Expression.scan`), and the Wald test is
vectorised over genes x contrasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

MIN_MU = 0.5  # as pyDESeq2's `min_mu`: floor of a cell's expected count in the Fisher information
PSEUDO = 0.5  # a group without any count is treated as holding half a count
N_BINS = 16  # size-factor quantile bins used to evaluate the Fisher information


@dataclass
class DEResult:
    """Per contrast (rows) x gene (columns) arrays; NaN where a gene was not tested."""

    log2fc: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    padj: np.ndarray
    base_mean: np.ndarray

    @property
    def tested(self) -> np.ndarray:
        return ~np.isnan(self.padj)


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along the last axis, ignoring NaN (kept as NaN)."""
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    nan = np.isnan(p)
    m = (~nan).sum(axis=1, keepdims=True)
    order = np.argsort(np.where(nan, np.inf, p), axis=1, kind="stable")
    ps = np.take_along_axis(np.where(nan, np.inf, p), order, axis=1)
    rank = np.arange(1, p.shape[1] + 1)[None, :]
    q = ps * m / rank
    q = np.minimum.accumulate(q[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(q)
    np.put_along_axis(out, order, np.minimum(q, 1.0), axis=1)
    out[nan] = np.nan
    return out


def nb_dispersions(z_mean: np.ndarray, z_var: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """Gene-wise NB dispersions: method of moments on ``y / s``, shrunk towards a mean trend.

    The moment estimate ``(var - mean * mean(1/s)) / mean^2`` is clipped to ``[1e-8, 10]``; the trend
    ``a0 + a1 / mean`` (DESeq2's parametric form) is fitted by iteratively reweighted least squares
    with gamma weights; the final log-dispersion is ``0.25 * gene-wise + 0.75 * trend``, a fixed-weight
    stand-in for DESeq2's maximum-a-posteriori shrinkage.
    """
    mean = np.asarray(z_mean, dtype=np.float64)
    inv_s = float(np.mean(1.0 / size_factors))
    expressed = mean > 0
    alpha = np.full(mean.shape, 10.0)
    alpha[expressed] = (z_var[expressed] - mean[expressed] * inv_s) / mean[expressed] ** 2
    alpha = np.clip(alpha, 1e-8, 10.0)
    fit = expressed & (alpha > 1e-6) & (alpha < 10.0)
    if fit.sum() < 3:
        return alpha
    a0, a1 = 0.1, 1.0
    x = 1.0 / mean[fit]
    for _ in range(20):
        trend = a0 + a1 * x
        w = 1.0 / trend
        design = np.column_stack([np.ones_like(x), x]) * w[:, None]
        coef = np.linalg.lstsq(design, alpha[fit] * w, rcond=None)[0]
        new = max(coef[0], 1e-8), max(coef[1], 1e-8)
        if np.allclose(new, (a0, a1), rtol=1e-6):
            break
        a0, a1 = new
    trend_all = a0 + a1 / np.maximum(mean, 1e-12)
    shrunk = np.exp(0.25 * np.log(alpha) + 0.75 * np.log(np.clip(trend_all, 1e-8, 10.0)))
    return np.where(expressed, shrunk, alpha)


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


def nb_wald(
    sum_high: np.ndarray,
    sum_low: np.ndarray,
    nbin_high: np.ndarray,
    nbin_low: np.ndarray,
    centres: np.ndarray,
    alpha: np.ndarray,
) -> DEResult:
    """Wald test of ``log(mu_high / mu_low)`` per contrast (rows) and gene (columns).

    For a two-group design the NB GLM mean of a group is estimated in closed form as
    ``sum(y) / sum(s)`` (exact when size factors are equal within a group). The standard error
    comes from the Fisher information ``sum_i m_i / (1 + alpha m_i)`` with ``m_i = max(s_i mu, 0.5)``,
    evaluated with the cells' size factors grouped in quantile bins (``nbin_*``: cells per bin,
    contrasts x bins).
    """
    ss_h = nbin_high @ centres  # sum of size factors per contrast
    ss_l = nbin_low @ centres
    tested = (sum_high + sum_low) > 0
    mu_h = np.maximum(sum_high, PSEUDO) / ss_h[:, None]
    mu_l = np.maximum(sum_low, PSEUDO) / ss_l[:, None]
    info_h = np.zeros_like(mu_h)
    info_l = np.zeros_like(mu_l)
    for b, s in enumerate(centres):
        m_h = np.maximum(s * mu_h, MIN_MU)
        m_l = np.maximum(s * mu_l, MIN_MU)
        info_h += nbin_high[:, b : b + 1] * (m_h / (1.0 + alpha * m_h))
        info_l += nbin_low[:, b : b + 1] * (m_l / (1.0 + alpha * m_l))
    beta = np.log(mu_h / mu_l)
    se = np.sqrt(1.0 / info_h + 1.0 / info_l)
    stat = beta / se
    pvalue = 2.0 * stats.norm.sf(np.abs(stat))
    nan = np.where(tested, 1.0, np.nan)
    base = (sum_high + sum_low) / (ss_h + ss_l)[:, None]
    pvalue = pvalue * nan
    return DEResult(beta / np.log(2) * nan, stat * nan, pvalue, fdr_bh(pvalue), base)

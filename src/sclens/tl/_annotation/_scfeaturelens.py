"""``flavor="scfeaturelens"``: the published tool's DE and GO test, vectorised over features.

Method (issue 4): Welch t-test per gene on library-normalised expression, BH over genes, fold
change as the ratio of group means; study set = genes at ``padj < 1e-5`` with fold change > 2 or
< 0.5 (``p < 0.05`` when no gene passes ``padj < 1e-5``; no fold-change filter when no selected gene
reaches 2); per term with 10-500 measured genes a binomial test of the hits against
``p = term size / measured genes`` and a Mann-Whitney test of the term's genes against the other
measured genes on fold-change ranks; terms kept at ``hits >= 1`` and Mann-Whitney ``p <= alpha``,
without correction across terms.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse, stats

from ..._stats import fdr_bh
from ._enrich import GeneSets
from ._types import DEResult

MIN_TERM, MAX_TERM = 10, 500
PADJ_STRICT, P_FALLBACK = 1e-5, 0.05


def welch(zs_h, z2_h, n_h, zs_l, z2_l, n_l) -> tuple[DEResult, np.ndarray]:
    """Welch t-test per contrast (rows) x gene from group sums of ``z`` and ``z^2``; also the ratio of means."""
    n_h = np.asarray(n_h, dtype=float)[:, None]
    n_l = np.asarray(n_l, dtype=float)[:, None]
    m_h, m_l = zs_h / n_h, zs_l / n_l
    v_h = np.maximum(z2_h - n_h * m_h**2, 0) / (n_h - 1)
    v_l = np.maximum(z2_l - n_l * m_l**2, 0) / (n_l - 1)
    se2 = v_h / n_h + v_l / n_l
    tested = se2 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(tested, (m_h - m_l) / np.sqrt(se2), np.nan)
        df = se2**2 / ((v_h / n_h) ** 2 / (n_h - 1) + (v_l / n_l) ** 2 / (n_l - 1))
        p = np.where(tested, 2 * stats.t.sf(np.abs(t), df), np.nan)
        fc = np.where(tested, m_h / m_l, np.nan)
        log2fc = np.log2(fc)
    return DEResult(log2fc, t, p, fdr_bh(p), (m_h + m_l) / 2), fc


def study_sets(de: DEResult, fc: np.ndarray) -> np.ndarray:
    """Return the published tool's study set per contrast, with its two fallbacks."""
    study = np.zeros(fc.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for j in range(fc.shape[0]):
            sig = de.padj[j] < PADJ_STRICT
            if not sig.any():
                sig = de.pvalue[j] < P_FALLBACK
            if (fc[j][sig] > 2).any():
                sig &= (fc[j] > 2) | (fc[j] < 0.5)
            study[j] = sig
    return study


def mannwhitney_greater(values: np.ndarray, members: sparse.csr_matrix) -> np.ndarray:
    """One-sided (greater) asymptotic Mann-Whitney p-value of each set's values vs all others.

    ``values``: the measured genes' fold changes (1-D, finite or +inf); ``members``: sets x genes
    0/1 matrix over the same genes. Continuity and tie corrections as in
    ``scipy.stats.mannwhitneyu(method="asymptotic")``.
    """
    n = values.size
    ranks = stats.rankdata(values)
    _, counts = np.unique(values, return_counts=True)
    tie = (counts**3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    n1 = np.asarray(members.sum(axis=1)).ravel()
    n2 = n - n1
    u1 = members @ ranks - n1 * (n1 + 1) / 2
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u1 - n1 * n2 / 2 - 0.5) / sigma
    return np.where(sigma > 0, stats.norm.sf(z), np.nan)


def go_test(de: DEResult, fc: np.ndarray, study: np.ndarray, gs: GeneSets) -> dict[str, np.ndarray]:
    """Binomial + Mann-Whitney test of every term (rows) for every contrast (columns)."""
    n_terms, n_c = gs.matrix.shape[0], fc.shape[0]
    out = {k: np.full((n_terms, n_c), np.nan) for k in ["pvalue", "binom_pvalue", "odds_ratio"]}
    out.update({k: np.zeros((n_terms, n_c)) for k in ["n_overlap", "set_size", "n_de"]})
    for j in range(n_c):
        measured = de.tested[j]
        n_meas = int(measured.sum())
        if n_meas < 2:
            continue
        sub = gs.matrix[:, measured]
        k_size = np.asarray(sub.sum(axis=1)).ravel()
        ok = (k_size >= MIN_TERM) & (k_size <= MAX_TERM)
        hits = np.asarray(sub @ study[j][measured].astype(float)).ravel()
        n_study = int(study[j][measured].sum())
        out["set_size"][:, j], out["n_overlap"][:, j], out["n_de"][:, j] = k_size, hits, n_study
        if not ok.any():
            continue
        rows = np.flatnonzero(ok)
        out["pvalue"][rows, j] = mannwhitney_greater(fc[j][measured], sub[rows])
        out["binom_pvalue"][rows, j] = stats.binom.sf(hits[rows] - 1, n_study, k_size[rows] / n_meas)
        b, c = n_study - hits[rows], k_size[rows] - hits[rows]
        d = n_meas - k_size[rows] - b
        with np.errstate(divide="ignore", invalid="ignore"):
            out["odds_ratio"][rows, j] = np.where(b * c > 0, hits[rows] * d / (b * c), np.inf)
    out["padj"] = fdr_bh(out["pvalue"].T).T
    return out

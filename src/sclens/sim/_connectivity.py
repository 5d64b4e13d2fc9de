"""Check whether the gene - feature structure of an SAE reproduces the generative connectivity M."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .._docs import doc_params
from .._stats import fdr_bh
from .._utils import as_dense_float32, check_adata, get_layer, resolve_seed, sae_activations
from ._recovery import live_features
from ._targets import FAMILIES, correlation, subsample, target_matrix


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between the columns of ``a`` and of ``b`` (0 for all-zero columns)."""
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    out = (a.T.astype(np.float64) @ b.astype(np.float64)) / np.outer(np.where(na > 0, na, 1), np.where(nb > 0, nb, 1))
    return out


def _row_scores(pseudo: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, ...]:
    """Recall, precision and accuracy of binary pseudo rows (genes x features) against true rows."""
    hit = (pseudo & truth).sum(axis=0)
    n_true = truth.sum(axis=0)
    n_pseudo = pseudo.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_true > 0, hit / n_true, np.nan)
        precision = np.where(n_pseudo > 0, hit / n_pseudo, np.nan)
    accuracy = (pseudo == truth).mean(axis=0)
    return hit, n_true, n_pseudo, recall, precision, accuracy


@doc_params()
def connectivity_recovery(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    percentiles: Sequence[float] = (20, 30, 40, 50, 60, 70),
    layer: str = "counts",
    connectivity_key: str = "connectivity",
    max_cells: int | None = 20_000,
    per_feature: bool = False,
    random_state: int | None = 0,
) -> pd.DataFrame:
    r"""Compare a pseudo-connectivity of genes and SAE features with the generative matrix M.

    1. Cosine similarities :math:`S_{{gf}}` between each gene's values :math:`Y_{{\cdot g}}` and
       each live feature's activations :math:`z_{{\cdot f}}` over cells.
    2. Pseudo-connectivity at percentile :math:`q`: :math:`P^{{(q)}}_{{gf}} = [S_{{gf}} > s_f^{{(q)}}]`,
       with :math:`s_f^{{(q)}}` the :math:`q`-th percentile of feature :math:`f`'s similarities.
    3. The feature's best-matching X'' variable :math:`p(f) = \arg\max_p |r(X''_p, z_f)|` and its
       true row :math:`M_{{\cdot p(f)}}` (the genes the variable drives).
    4. ``recall``: fraction of those genes that the pseudo row recovers; one-sided binomial test of
       the number recovered against chance, :math:`\mathrm{{Binomial}}(|M_{{\cdot p}}|, \pi_f)`
       with :math:`\pi_f` the fraction of genes in the pseudo row; Benjamini-Hochberg per
       percentile. ``precision`` and ``accuracy`` (agreement over all genes) are reported too, as is
       the recall against a shuffled M (genes permuted), the chance baseline.

    Parameters
    ----------
    {adata}
    {sae_key}
    percentiles
        Percentiles of each feature's similarities used as thresholds (the paper: 20th to 70th).
    layer
        Layer holding Y.
    connectivity_key
        Key of M (genes x programs) in ``adata.varm``.
    max_cells
        Use a random subset of at most this many cells (``None``: all).
    per_feature
        Return one row per (feature, percentile) instead of the per-percentile summary.
    {random_state}

    Returns
    -------
    DataFrame. Summary (default), one row per ``percentile``: ``n_features``, ``recall``,
    ``precision``, ``accuracy`` (means over features), ``recall_shuffled``,
    ``precision_shuffled``, ``frac_significant`` (adjusted p < 0.05). With ``per_feature=True``
    one row per (``feature``, ``percentile``) with ``best_variable``, ``best_r``, ``n_true``,
    ``n_pseudo``, ``n_recovered``, ``recall``, ``precision``, ``accuracy``, ``pvalue``, ``padj``,
    ``recall_shuffled``, ``precision_shuffled``.
    """
    q = _check_inputs(adata, percentiles, layer=layer, connectivity_key=connectivity_key)
    m = np.asarray(adata.varm[connectivity_key]) != 0
    acts = sae_activations(adata, sae_key, need_uns=False)
    seed = resolve_seed(random_state)
    rows = subsample(adata.n_obs, max_cells, seed)
    live = live_features(acts)
    z = as_dense_float32(acts[rows][:, live], name="SAE activations")
    y = target_matrix(adata, f"layers:{layer}", rows)
    x2 = target_matrix(adata, FAMILIES["X''"], rows)
    if m.shape != (adata.n_vars, x2.shape[1]):
        expected = (adata.n_vars, x2.shape[1])
        msg = f"varm[{connectivity_key!r}] has shape {m.shape}; expected (genes, programs) = {expected}."
        raise ValueError(msg)

    sim = _cosine(y, z)  # genes x features
    r = np.nan_to_num(np.abs(correlation(x2, z)), nan=-1.0)  # programs x features
    best = r.argmax(axis=0) if r.size else np.zeros(z.shape[1], dtype=int)
    best_r = r[best, np.arange(z.shape[1])] if r.size else np.full(z.shape[1], np.nan)
    truth = m[:, best]
    shuffled = m[np.random.default_rng(seed + 1).permutation(m.shape[0])][:, best]
    ids = {"feature": live, "best_variable": best, "best_r": np.where(best_r >= 0, best_r, np.nan)}
    table = pd.concat([_percentile_scores(sim, pct, truth, shuffled, ids) for pct in q], ignore_index=True)
    return table if per_feature else _summarise(table)


def _check_inputs(adata: AnnData, percentiles: Sequence[float], *, layer: str, connectivity_key: str) -> np.ndarray:
    """Return the percentiles as an array; refuse bad ones and data without M, Y or X''."""
    check_adata(adata)
    q = np.asarray(percentiles, dtype=float)
    if q.ndim != 1 or q.size == 0 or ((q <= 0) | (q >= 100)).any():
        msg = f"percentiles must be a non-empty list of numbers in (0, 100), got {percentiles!r}."
        raise ValueError(msg)
    if connectivity_key not in adata.varm:
        msg = f"`adata.varm[{connectivity_key!r}]` (M, genes x programs) not found; simulate with `sl.sim.simulate`."
        raise KeyError(msg)
    get_layer(adata, layer, what="Y")
    if FAMILIES["X''"] not in adata.obsm:
        msg = "`adata.obsm['X_celltype_altered']` (X'') not found; simulate with `sl.sim.simulate`."
        raise KeyError(msg)
    return q


def _percentile_scores(
    sim: np.ndarray, pct: float, truth: np.ndarray, shuffled: np.ndarray, ids: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Return one row per feature: the pseudo row at percentile ``pct`` scored against M and shuffled M."""
    pseudo = sim > np.percentile(sim, pct, axis=0, keepdims=True)
    hit, n_true, n_pseudo, recall, precision, accuracy = _row_scores(pseudo, truth)
    _, _, _, rec_s, prec_s, _ = _row_scores(pseudo, shuffled)
    pval = np.where(n_true > 0, stats.binom.sf(hit - 1, n_true, n_pseudo / truth.shape[0]), np.nan)
    padj = fdr_bh(pval).ravel()
    return pd.DataFrame(
        {
            "feature": ids["feature"],
            "percentile": pct,
            "best_variable": ids["best_variable"],
            "best_r": ids["best_r"],
            "n_true": n_true,
            "n_pseudo": n_pseudo,
            "n_recovered": hit,
            "recall": recall,
            "precision": precision,
            "accuracy": accuracy,
            "pvalue": pval,
            "padj": padj,
            "recall_shuffled": rec_s,
            "precision_shuffled": prec_s,
        }
    )


def _summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Return the per-percentile means over features that have true genes."""
    table = table[table["n_true"] > 0]
    return (
        table.groupby("percentile")
        .agg(
            n_features=("feature", "size"),
            recall=("recall", "mean"),
            precision=("precision", "mean"),
            accuracy=("accuracy", "mean"),
            recall_shuffled=("recall_shuffled", "mean"),
            precision_shuffled=("precision_shuffled", "mean"),
            frac_significant=("padj", lambda s: float((s < 0.05).mean())),
        )
        .reset_index()
    )

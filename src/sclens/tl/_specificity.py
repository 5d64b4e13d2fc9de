"""Local / global / dead SAE features per cell group (paper sec. 5.1, appendix A.3.6)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse, stats

from .._columns import write_columns
from .._docs import doc_params
from .._readers import store_result
from .._stats import fdr_bh
from .._utils import check_key_added, group_labels, sae_activations, writable

logger = logging.getLogger("sclens")

METHODS = ("paper", "rank")


def _group_codes(adata: AnnData, groupby: str) -> tuple[np.ndarray, list[str]]:
    cat, n_missing = group_labels(adata, groupby)
    groups = [str(g) for g in cat.cat.categories]
    missing = f" ({n_missing} cells with a missing label are left out)" if n_missing else ""
    if len(groups) < 2:
        msg = (
            f"`adata.obs[{groupby!r}]` has {len(groups)} group(s){missing}; specificity needs at least two "
            "groups to compare a group with the rest: pass a `groupby` column with two or more labels."
        )
        raise ValueError(msg)
    if n_missing:
        logger.warning("feature_specificity: %d cell(s) with a missing `%s` label are left out.", n_missing, groupby)
    return cat.cat.codes.to_numpy(), groups


def _one_hot(codes: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    keep = np.flatnonzero(codes >= 0)
    return sparse.csr_matrix((np.ones(keep.size, dtype=np.float64), (keep, codes[keep])), shape=(codes.size, n_groups))


def _rank_auc(act: sparse.csr_matrix, onehot: sparse.csr_matrix, n_in: np.ndarray):
    """Mann-Whitney U (greater) of every feature x group, from the non-zero values only.

    Zeros share the average rank ``(n0 + 1) / 2``; non-zero values are ranked within their column
    with ties averaged. Returns ``(auc, pvalue)`` arrays (groups x features), asymptotic normal
    approximation with tie and continuity correction as in :func:`scipy.stats.mannwhitneyu`.
    """
    n = act.shape[0]
    csc = act.tocsc()
    csc.sort_indices()
    n_features = csc.shape[1]
    nnz_col = np.diff(csc.indptr)
    col = np.repeat(np.arange(n_features), nnz_col)
    order = np.lexsort((csc.data, col))
    data_s, col_s = csc.data[order], col[order]
    pos = np.arange(order.size) - csc.indptr[col_s] + 1.0  # 1-based rank among non-zeros
    change = np.ones(order.size, dtype=bool)
    change[1:] = (data_s[1:] != data_s[:-1]) | (col_s[1:] != col_s[:-1])
    run = np.cumsum(change) - 1
    run_len = np.bincount(run)
    avg_rank = np.bincount(run, weights=pos) / run_len
    n0 = n - nnz_col
    ranks = np.empty(order.size)
    ranks[order] = n0[col_s] + avg_rank[run]
    rank_mat = sparse.csc_matrix((ranks, csc.indices, csc.indptr), shape=csc.shape)
    nz_mat = sparse.csc_matrix((np.ones_like(ranks), csc.indices, csc.indptr), shape=csc.shape)
    oh_t = onehot.T.tocsr()
    rank_sum_nz = np.asarray((oh_t @ rank_mat).todense())
    nnz_in = np.asarray((oh_t @ nz_mat).todense())
    n_in_ = n_in[:, None].astype(np.float64)
    n_out = n - n_in_
    rank_sum = rank_sum_nz + (n_in_ - nnz_in) * (n0[None, :] + 1) / 2.0
    u = rank_sum - n_in_ * (n_in_ + 1) / 2.0
    ties = (n0.astype(np.float64) ** 3 - n0) + np.bincount(
        col_s[change], weights=run_len.astype(np.float64) ** 3 - run_len, minlength=n_features
    )
    sigma = np.sqrt(n_in_ * n_out / 12.0 * ((n + 1) - ties[None, :] / (n * (n - 1.0))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n_in_ * n_out / 2.0 - 0.5) / sigma
    pvalue = np.where(sigma > 0, stats.norm.sf(z), 1.0)
    auc = u / (n_in_ * n_out)
    return auc, pvalue


def _group_stats(act: sparse.csr_matrix, codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """Return groups x features mean in the group, summed SE, effect (in - out), AUROC and rank p-value."""
    onehot = _one_hot(codes, n_groups)
    n = act.shape[0]
    n_in = np.asarray(onehot.sum(axis=0)).ravel()
    oh_t = onehot.T.tocsr()
    s1_in = np.asarray((oh_t @ act.astype(np.float64)).todense())
    s2_in = np.asarray((oh_t @ act.astype(np.float64).power(2)).todense())
    s1, s2 = s1_in.sum(0, keepdims=True), s2_in.sum(0, keepdims=True)
    n_in_ = n_in[:, None].astype(np.float64)
    mean_in, se_in = _mean_se(s1_in, s2_in, n_in_)
    mean_out, se_out = _mean_se(s1 - s1_in, s2 - s2_in, n - n_in_)
    auc, p_rank = _rank_auc(act, onehot, n_in)
    return mean_in, se_in + se_out, mean_in - mean_out, auc, p_rank


def _mean_se(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean and its standard error from the sums of values and of squares."""
    mean = s1 / np.maximum(n, 1)
    var = np.maximum(s2 - n * mean**2, 0) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var / np.maximum(n, 1))


def _classify(
    sig: np.ndarray,
    live: np.ndarray,
    groups: Sequence[str],
    *,
    effect: np.ndarray,
    auc: np.ndarray,
    pvalue: np.ndarray,
    padj: np.ndarray | None,
) -> pd.DataFrame:
    """Return the features table: kind (local/global/dead), top group and its statistics."""
    n_features = sig.shape[1]
    n_sig = sig.sum(0)
    local = live & (n_sig == 1)
    top = np.where(local, np.argmax(sig, axis=0), np.argmax(effect, axis=0))
    cols = np.arange(n_features)
    kind = np.where(~live, "dead", np.where(local, "local", "global"))
    top_group = np.where(live, np.asarray(groups, dtype=object)[top], "")
    return pd.DataFrame(
        {
            "kind": kind, "top_group": top_group.astype(str), "effect": effect[top, cols], "auc": auc[top, cols],
            "pvalue": pvalue[top, cols], "padj": padj[top, cols] if padj is not None else np.nan,
            "n_groups_significant": n_sig.astype(np.int64),
        },
        index=pd.Index([str(i) for i in range(n_features)]),
    )  # fmt: skip


@doc_params()
def feature_specificity(
    adata: AnnData,
    *,
    groupby: str,
    sae_key: str = "sae",
    method: Literal["paper", "rank"] = "paper",
    alpha: float = 0.05,
    min_effect: float | None = None,
    key_added: str = "specificity",
    copy: bool = False,
) -> AnnData | None:
    r"""Classify SAE features as local (one group), global or dead.

    For every feature :math:`f` and group :math:`g` the activations of the cells in :math:`g` are
    compared with those of all other cells.

    ``method="paper"`` (the paper's rule, appendix A.3.6): the feature is significantly higher in
    :math:`g` when

    .. math:: \bar a_{{in}} - \bar a_{{out}} > z_{{1-\alpha/2}} \, (SE_{{in}} + SE_{{out}}),

    with standard errors :math:`SE = s / \sqrt{{n}}`; :math:`z_{{0.975}} = 1.96` for the default
    ``alpha=0.05``. The reported ``pvalue`` is :math:`2\,\Phi(-(\bar a_{{in}} - \bar a_{{out}}) /
    (SE_{{in}} + SE_{{out}}))`, so ``pvalue < alpha`` is exactly the rule.

    ``method="rank"`` (stricter): one-sided Mann-Whitney U test (in > out; normal approximation
    with tie and continuity correction, as :func:`scipy.stats.mannwhitneyu`) for every live
    feature x group, Benjamini-Hochberg correction over all those tests, and an effect-size floor:
    significant when ``padj < alpha`` and the AUROC :math:`U / (n_{{in}} n_{{out}})` is at least
    ``min_effect``.

    A feature is ``local`` when significant in exactly one group, ``global`` when it is active in
    some cell but not local, and ``dead`` when it is never active. All statistics are computed
    with sparse matrix products over all features at once. Cells whose ``groupby`` value is
    missing are left out.

    Parameters
    ----------
    {adata}
    groupby
        Column of ``adata.obs`` with the cell groups (e.g. cell types).
    {sae_key}
    method
        ``"paper"`` (mean difference against summed standard errors) or ``"rank"``
        (Mann-Whitney U with BH correction and an AUROC floor).
    alpha
        Significance level: sets the z threshold of ``"paper"`` and the FDR of ``"rank"``.
    min_effect
        Minimum AUROC of the group against the rest for a significant call. ``None`` uses 0.6 for
        ``"rank"`` and no floor for ``"paper"``.
    key_added
        Key in ``adata.uns[sae_key]`` under which the group means and parameters are stored.
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key]['features']`` columns ``kind`` (``local``/``global``/``dead``),
      ``top_group`` (the local group, or the group with the largest effect), ``effect``
      (mean in - mean out in ``top_group``), ``auc``, ``pvalue`` and ``padj`` (NaN for
      ``"paper"``) of ``top_group``, ``n_groups_significant``;
    * ``adata.uns[sae_key][key_added]['group_means']``: DataFrame groups x features of mean
      activations (index: group names, columns: feature ids as strings; groups are rows so that
      names such as ``"CD4+/CD25 T Reg"`` can be written to h5ad);
    * ``adata.uns[sae_key][key_added]['params']``: ``groupby``, ``method``, ``alpha``,
      ``min_effect``, the counts ``n_local``, ``n_global``, ``n_dead``, ``sae_key`` and ``sae_run_id``.
    """
    if method not in METHODS:
        msg = f"method must be one of {METHODS}, got {method!r}."
        raise ValueError(msg)
    if not 0 < alpha < 1:
        msg = f"alpha must be between 0 and 1, got {alpha!r}."
        raise ValueError(msg)
    own = ("features", "params", "weights", "metrics", "run_id")
    check_key_added(key_added, reserved={k: f"the SAE run's `{k}`" for k in own})
    act = sae_activations(adata, sae_key)
    codes, groups = _group_codes(adata, groupby)
    if min_effect is None:
        min_effect = 0.6 if method == "rank" else 0.0
    n_features = act.shape[1]

    live = np.diff(act.tocsc().indptr) > 0  # over all cells, also those without a group label
    keep = codes >= 0
    if not keep.all():
        act, codes = act[keep], codes[keep]
    mean_in, se, effect, auc, p_rank = _group_stats(act, codes, len(groups))
    if method == "paper":
        with np.errstate(divide="ignore", invalid="ignore"):
            pvalue = np.where(se > 0, 2 * stats.norm.sf(effect / se), np.where(effect > 0, 0.0, 1.0))
        pvalue = np.minimum(pvalue, 1.0)
        sig = (effect > 0) & (pvalue < alpha) & (auc >= min_effect)
        padj = None
    else:
        pvalue = p_rank
        padj = np.ones_like(pvalue)
        padj[:, live] = fdr_bh(pvalue[:, live].ravel()).reshape(len(groups), -1)
        sig = (padj < alpha) & (auc >= min_effect)
    sig[:, ~live] = False
    feats = _classify(sig, live, groups, effect=effect, auc=auc, pvalue=pvalue, padj=padj)
    kind = feats["kind"].to_numpy()
    means = pd.DataFrame(mean_in, index=pd.Index([str(g) for g in groups]), columns=feats.index.copy())

    counts = {k: int((kind == k).sum()) for k in ("local", "global", "dead")}
    logger.info("feature_specificity: %(local)d local, %(global)d global, %(dead)d dead features", counts)
    adata = writable(adata, copy=copy)
    write_columns(adata, sae_key, feats, writer="sl.tl.feature_specificity", n_features=n_features)
    store_result(
        adata, "specificity", key=key_added, parent=sae_key, tables={"group_means": means},
        params={"groupby": groupby, "method": method, "alpha": float(alpha), "min_effect": float(min_effect),
                **{f"n_{k}": v for k, v in counts.items()}},
    )  # fmt: skip
    return adata if copy else None

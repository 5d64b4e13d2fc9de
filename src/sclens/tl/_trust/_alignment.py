"""``sl.tl.feature_alignment``: how well each feature separates the categories of known cell labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._columns import write_columns
from ..._docs import doc_params
from ..._readers import store_result
from ..._utils import resolve_seed, sae_activations, writable
from .._specificity import _one_hot, _rank_auc
from ._trust_utils import as_list, obs_codes

logger = logging.getLogger("sclens")

LEVELS = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
COLUMNS = ["feature", "groupby", "category", "n_cells", "auroc", "threshold", "precision", "recall", "f1"]


def _thresholds(act: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Candidate thresholds (levels x features): quantiles of each feature's non-zero training activations."""
    csc = act[rows].tocsc()
    thr = np.full((LEVELS.size, act.shape[1]), np.inf)
    for j in range(act.shape[1]):
        vals = csc.data[csc.indptr[j] : csc.indptr[j + 1]]
        vals = vals[vals > 0]
        if vals.size:
            thr[:, j] = np.quantile(vals, LEVELS, method="lower")
    return thr


def _counts_above(act: sparse.csr_matrix, thr: np.ndarray, onehot: sparse.csr_matrix):
    """Per threshold level: cells at or above it per category (levels x groups x features) and in total."""
    oh_t = onehot.T.tocsr()
    tp = np.zeros((thr.shape[0], onehot.shape[1], act.shape[1]))
    pp = np.zeros((thr.shape[0], act.shape[1]))
    for q in range(thr.shape[0]):
        hit = (act.data >= thr[q, act.indices]).astype(np.float64)
        above = sparse.csr_matrix((hit, act.indices, act.indptr), shape=act.shape)
        tp[q] = (oh_t @ above).toarray()
        pp[q] = tp[q].sum(axis=0)
    return tp, pp


def _f1(tp: np.ndarray, pp: np.ndarray, pos: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(2 * tp / (pp[:, None, :] + pos[None, :, None]))


def _align_one(act: sparse.csr_matrix, codes: np.ndarray, names: list[str], test: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC (all labelled cells) and held-out precision / recall / F1 at the training-chosen threshold."""
    keep = codes >= 0
    act, codes, test = act[keep], codes[keep], test[keep]
    onehot = _one_hot(codes, len(names))
    n_in = np.asarray(onehot.sum(axis=0)).ravel()
    auc, _ = _rank_auc(act, onehot, n_in)
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    thr = _thresholds(act, train_rows)
    tp_tr, pp_tr = _counts_above(act[train_rows], thr, onehot[train_rows])
    tp_te, pp_te = _counts_above(act[test_rows], thr, onehot[test_rows])
    pos_tr = np.asarray(onehot[train_rows].sum(axis=0)).ravel()
    pos_te = np.asarray(onehot[test_rows].sum(axis=0)).ravel()
    best = np.argmax(_f1(tp_tr, pp_tr, pos_tr), axis=0)  # groups x features
    pick = best[None]
    tp = np.take_along_axis(tp_te, pick, axis=0)[0]
    pp = np.take_along_axis(np.broadcast_to(pp_te[:, None, :], tp_te.shape), pick, axis=0)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pp > 0, tp / pp, 0.0)
        recall = np.where(pos_te[:, None] > 0, tp / pos_te[:, None], np.nan)
        f1 = np.nan_to_num(2 * tp / (pp + pos_te[:, None]))
    threshold = np.take_along_axis(thr, best, axis=0)
    return {"auroc": auc, "threshold": threshold, "precision": precision, "recall": recall, "f1": f1, "n": n_in}


def _score_column(act: sparse.csr_matrix, live: np.ndarray, col: str, codes, names, test):
    """Long table rows, features-table columns and best AUROC per live feature for one obs column."""
    res = _align_one(act, codes, names, test)
    g, f = np.meshgrid(np.arange(len(names)), np.arange(live.size), indexing="ij")
    table = pd.DataFrame({
        "feature": live[f.ravel()].astype(np.int64), "groupby": col,
        "category": np.asarray(names, dtype=object)[g.ravel()], "n_cells": res["n"][g.ravel()].astype(np.int64),
        **{k: res[k][g, f].ravel().astype(np.float64) for k in ("auroc", "threshold", "precision", "recall", "f1")},
    })  # fmt: skip
    top, idx = np.argmax(res["auroc"], axis=0), np.arange(live.size)
    best = res["auroc"][top, idx]
    cols = {
        f"{col}_best": np.asarray(names, dtype=object)[top].astype(str),
        f"{col}_auroc": best,
        f"{col}_f1": res["f1"][top, idx],
    }
    return table, cols, best


@doc_params()
def feature_alignment(
    adata: AnnData,
    *,
    groupby: str | Sequence[str],
    technical: str | Sequence[str] | None = None,
    sae_key: str = "sae",
    test_size: float = 0.3,
    random_state: int | None = 0,
    key_added: str = "alignment",
    copy: bool = False,
) -> AnnData | None:
    """How well every feature separates each category of known cell labels (cell type, batch, ...).

    For every live feature and every category of each ``groupby`` column (one category against the
    rest of the labelled cells):

    * ``auroc``: area under the ROC curve of the activation (zeros included, ties averaged; the
      Mann-Whitney statistic of :func:`feature_specificity`) over all labelled cells;
    * ``precision``, ``recall``, ``f1`` of the rule "activation >= threshold" on a held-out split:
      the cells are split once (seeded) into a training part and a ``test_size`` part; the threshold
      is chosen among quantiles (0, 0.1, ..., 0.9, 0.95) of the feature's non-zero training
      activations to maximise F1 on the training cells and the scores are reported on the held-out
      cells only.

    With ``technical`` columns (e.g. ``"batch"``), a live feature is ``batch_driven`` when

    ``max(AUROC over every category of every technical column) > max(AUROC over every category of
    every biological column)`` (strictly; dead features are ``False``).

    Only the AUROCs are compared, over all labelled cells (not the held-out split, not F1): AUROC is
    0.5 by chance whatever a category's size, so a 3-batch column and a 20-type column are on the
    same scale, while F1 is not (its chance level is the category's share of cells). So a feature
    active in one batch's cells across cell types is flagged (it separates that batch and no cell
    type); a feature of one cell type in every batch is not. Two cases are usually not flagged: a feature
    active exactly in the cells of one batch *and* one cell type (AUROC ``0.5 + n_both / (2 n_batch)``
    against ``0.5 + n_both / (2 n_type)``: flagged only when the batch has fewer cells than the cell
    type), and a feature whose activation only grows with the batch inside the cells of its program
    (e.g. :func:`sclens.sim.simulate`, where the batch shift rides on the programs: in a 64-feature
    SAE on it the highest batch AUROC of any feature is 0.59 and every feature separates a cell type
    better, so nothing is flagged). For those, compare the ``{{column}}_auroc`` columns yourself or
    pass your own ``features`` to :func:`batch_steer`.
    Cells with a missing label are left out of that column's scores.

    Parameters
    ----------
    {adata}
    groupby
        Column(s) of ``adata.obs`` with biological labels (e.g. ``"cell_type"``).
    technical
        Column(s) of ``adata.obs`` with technical labels (e.g. ``"batch"``), scored the same way.
    {sae_key}
    test_size
        Fraction of cells held out to report precision, recall and F1.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['table']``: long table, one row per live feature x column x
      category, columns ``feature``, ``groupby``, ``category``, ``n_cells``, ``auroc``,
      ``threshold``, ``precision``, ``recall``, ``f1``;
    * ``adata.uns[sae_key]['features']`` columns ``{{column}}_best`` (category of highest AUROC),
      ``{{column}}_auroc`` and ``{{column}}_f1`` per column, and ``batch_driven`` with ``technical``;
    * ``adata.uns[sae_key][key_added]['params']``: the arguments, ``sae_key`` and ``sae_run_id``.
    """
    bio, tech = as_list(groupby, "groupby"), as_list(technical, "technical")
    if not bio:
        msg = "groupby is empty; pass at least one biological column of adata.obs, e.g. groupby='cell_type'."
        raise ValueError(msg)
    if set(bio) & set(tech):
        msg = f"Columns {sorted(set(bio) & set(tech))} are both in groupby and technical; list each once."
        raise ValueError(msg)
    if not 0 < test_size < 1:
        msg = f"test_size must be in (0, 1), got {test_size!r}."
        raise ValueError(msg)
    act = sae_activations(adata, sae_key)
    coded = {c: obs_codes(adata, c) for c in bio + tech}
    rng = np.random.default_rng(resolve_seed(random_state))
    test = np.zeros(adata.n_obs, dtype=bool)
    test[rng.choice(adata.n_obs, max(1, round(test_size * adata.n_obs)), replace=False)] = True
    live = np.flatnonzero(np.diff(act.tocsc().indptr) > 0)
    if live.size == 0:
        msg = f"All features of run {sae_key!r} are dead (never active); nothing to align."
        raise ValueError(msg)
    scored = {c: _score_column(act[:, live], live, c, *coded[c], test) for c in bio + tech}
    long = pd.concat([t for t, _, _ in scored.values()], ignore_index=True)
    long = long.sort_values(["feature", "groupby", "category"], kind="stable").reset_index(drop=True)[COLUMNS]
    n_features = act.shape[1]
    frame = pd.DataFrame(index=pd.Index([str(i) for i in range(n_features)]))
    for _, cols, _ in scored.values():
        for name, values in cols.items():
            best = name.endswith("_best")
            frame[name] = np.full(n_features, "" if best else np.nan, dtype=object if best else float)
            frame.iloc[live, frame.columns.get_loc(name)] = values
    if tech:
        driven = np.zeros(n_features, dtype=bool)
        auc = {c: a for c, (_, _, a) in scored.items()}
        driven[live] = np.max([auc[c] for c in tech], axis=0) > np.max([auc[c] for c in bio], axis=0)
        frame["batch_driven"] = driven
        logger.info("feature_alignment: %d of %d live features are batch-driven", int(driven.sum()), live.size)

    adata = writable(adata, copy=copy)
    write_columns(adata, sae_key, frame, writer="sl.tl.feature_alignment", n_features=n_features)
    store_result(
        adata, "alignment", key=key_added, parent=sae_key, tables={"table": long},
        params={"groupby": bio, "technical": tech, "test_size": float(test_size),
                "random_state": resolve_seed(random_state), "n_test": int(test.sum()), "levels": LEVELS},
    )  # fmt: skip
    return adata if copy else None

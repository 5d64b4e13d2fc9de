"""Shared runner of :func:`annotate_features` and :func:`contrast`: DE + enrichment of many contrasts."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..._columns import write_columns
from ..._readers import features_table
from ..._settings import resolve_n_jobs
from ..._utils import progress
from ._chunks import worker_deaths
from ._dispersion import DISPERSIONS
from ._elim import check_go_algorithm
from ._engines import FLAVORS, de_methods, pick
from ._enrich import collect
from ._types import Options

if TYPE_CHECKING:
    from anndata import AnnData

    from ._cellsets import CellSets
    from ._de import Expression
    from ._enrich import GeneSets

FEATURE_CHUNK = 128
DE_COLUMNS = ["log2fc", "stat", "pvalue", "padj", "base_mean"]


def check_options(**kw: Any) -> Options:
    """Validate the shared DE / enrichment arguments."""
    if kw["flavor"] not in FLAVORS:
        msg = f"flavor must be {' or '.join(map(repr, FLAVORS))}, got {kw['flavor']!r}."
        raise ValueError(msg)
    if kw["de_method"] not in de_methods():
        msg = f"de_method must be {' or '.join(map(repr, de_methods()))}, got {kw['de_method']!r}."
        raise ValueError(msg)
    if not isinstance(kw["enrichment"], str) or not kw["enrichment"]:
        msg = f"enrichment must be 'ora' or a decoupler method name such as 'ulm', got {kw['enrichment']!r}."
        raise ValueError(msg)
    if kw["enrichment"] != "ora":
        import decoupler as dc

        if kw["enrichment"].startswith("_") or not callable(getattr(dc.mt, kw["enrichment"], None)):
            msg = f"Unknown enrichment {kw['enrichment']!r}: use 'ora' or a decoupler method such as 'ulm', 'mlm'."
            raise ValueError(msg)
    if kw["alpha"] is None:  # the default term rule: padj < 0.05; the paper's raw p < 0.01
        kw["alpha"] = 0.01 if kw["flavor"] == "scfeaturelens" else 0.05
    for name in ("alpha", "de_alpha"):
        if not 0 < kw[name] <= 1:
            msg = f"{name} must be in (0, 1], got {kw[name]!r}."
            raise ValueError(msg)
    _check_study_options(kw)
    kw["go_algorithm"] = check_go_algorithm(kw["go_algorithm"])
    if kw["dispersions"] not in DISPERSIONS:
        msg = f"dispersions must be {' or '.join(map(repr, DISPERSIONS))}, got {kw['dispersions']!r}."
        raise ValueError(msg)
    if int(kw["min_size"]) < 1:
        msg = f"min_size must be >= 1, got {kw['min_size']!r}."
        raise ValueError(msg)
    return Options(**{**kw, "n_jobs": resolve_n_jobs(kw["n_jobs"])})


def _check_study_options(kw: dict[str, Any]) -> None:
    """Validate (and normalise in ``kw``) ``max_de_genes`` and ``independent_filter``."""
    cap = kw["max_de_genes"]
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or cap < 1:
            msg = f"max_de_genes must be a positive integer or None, got {cap!r}."
            raise ValueError(msg)
        kw["max_de_genes"] = int(cap)
    if not isinstance(kw["independent_filter"], bool | np.bool_):
        msg = f"independent_filter must be True or False, got {kw['independent_filter']!r}."
        raise TypeError(msg)
    kw["independent_filter"] = bool(kw["independent_filter"])


def run_contrasts(
    expr: Expression,
    high: sparse.csc_matrix,
    low: sparse.csc_matrix,
    ids: np.ndarray,
    gs: GeneSets,
    opt: Options,
    *,
    keep_de: set[int] = frozenset(),
    top: list[pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """DE + enrichment of every contrast (column of ``high`` / ``low``): kept terms and chosen DE tables.

    The one runner of all engines (:mod:`sclens.tl._annotation._engines`): the DE engine is built once (its
    fixed-cost pass over the expression), then tests the contrasts in chunks of ``FEATURE_CHUNK``,
    each chunk handed to the enrichment method. ``top``: a list that receives, per chunk, the
    :func:`top_genes` table of the contrasts.
    """
    engine_cls, enrichment_cls = pick(opt)
    genes = pd.Index(expr.var_names)
    enr = enrichment_cls(gs, opt, ids, genes)
    n_c = high.shape[1]
    if n_c == 0:
        keys = ["pvalue", "padj", "n_overlap", "set_size", "n_de", enr.effect]
        empty = {k: np.zeros((len(gs.terms), 0)) for k in keys}
        return collect(empty, gs, ids[:0], np.zeros((len(gs.terms), 0), bool)), {}
    tables: list[pd.DataFrame] = []
    de_tables: dict[str, pd.DataFrame] = {}
    with worker_deaths():  # dask counts: a chunk whose workers all died is a clear error
        engine = engine_cls(expr, high, low, opt)
        for start in progress(range(0, n_c, FEATURE_CHUNK), desc="annotating", unit="chunk"):
            sl_ = slice(start, min(start + FEATURE_CHUNK, n_c))
            de = engine.test(sl_)
            tables.append(enr.add(de, sl_))
            if top is not None:
                top.append(top_genes(de, ids[sl_], genes, de_alpha=opt.de_alpha))
            for j, f in enumerate(ids[sl_]):
                if int(f) in keep_de:
                    de_tables[str(int(f))] = pd.DataFrame(
                        {c: getattr(de, c)[j].astype(float) for c in DE_COLUMNS}, index=genes.astype(str)
                    )
        del engine  # its group sums (2 x 3 x contrasts x genes floats) go before the table is assembled
    tables.append(enr.finish())
    out = pd.concat([t for t in tables if t is not None], ignore_index=True)
    tables.clear()
    tie = ["mean_log2fc"] if "mean_log2fc" in out.columns else []
    by = ["feature", enr.order, *tie, "term"]
    asc = [True, True, *([False] * len(tie)), True]
    return out.sort_values(by, ascending=asc, kind="stable", ignore_index=True), de_tables


def top_genes(de: Any, ids: np.ndarray, genes: pd.Index, *, de_alpha: float, n_top: int = 20) -> pd.DataFrame:
    """Long table of each contrast's ``n_top`` up-regulated genes (``log2fc > 0``, ``padj < de_alpha``) by statistic."""
    with np.errstate(invalid="ignore"):
        score = np.where((de.log2fc > 0) & (de.padj < de_alpha), np.nan_to_num(de.stat, nan=0.0), -np.inf)
    rows, cols = [], []
    for j in range(score.shape[0]):
        order = np.argsort(-score[j], kind="stable")[:n_top]
        order = order[np.isfinite(score[j, order])]
        rows.append(np.full(order.size, j))
        cols.append(order)
    r, c = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))
    return pd.DataFrame(
        {
            "feature": np.asarray(ids)[r].astype(np.int64),
            "gene": genes.to_numpy().astype(str)[c],
            "log2fc": de.log2fc[r, c].astype(np.float64),
            "padj": de.padj[r, c].astype(np.float64),
        }
    )


#: per-feature columns written by :func:`annotate_features`, with their value for features not annotated
SUMMARY_COLUMNS = {"n_terms": 0, "best_term": "", "best_padj": np.nan, "n_high": 0, "n_low": 0, "skip_reason": "",
                   "label": ""}  # fmt: skip
_DTYPES = {"n_terms": np.int64, "best_term": str, "best_padj": np.float64, "n_high": np.int64, "n_low": np.int64,
           "skip_reason": str, "label": str}  # fmt: skip


def feature_summary(results: pd.DataFrame, features: np.ndarray, sets: CellSets) -> pd.DataFrame:
    """Per feature: ``n_terms``, ``best_term`` and its ``best_padj``, set sizes, ``skip_reason``, ``label``.

    The label is the best term's name, whole (screens shorten it, the stored table never does).
    """
    idx = pd.Index([str(int(f)) for f in features])
    summary = pd.DataFrame(SUMMARY_COLUMNS, index=idx)
    tested = [str(int(f)) for f in sets.features]
    summary.loc[tested, "n_high"] = np.diff(sets.high.indptr)
    summary.loc[tested, "n_low"] = np.diff(sets.low.indptr)
    if len(sets.skipped):
        skipped = [str(int(f)) for f in sets.skipped["feature"]]
        summary.loc[skipped, ["n_high", "n_low"]] = sets.skipped[["n_high", "n_low"]].to_numpy()
        summary.loc[skipped, "skip_reason"] = sets.skipped["reason"].astype(str).to_numpy()
    if len(results):
        counts = results.groupby("feature").size()
        first = results.groupby("feature").head(1).set_index("feature").loc[counts.index]
        keys = [str(f) for f in counts.index]  # one assignment per column: thousands of features
        summary.loc[keys, "n_terms"] = counts.to_numpy().astype(np.int64)
        summary.loc[keys, "best_term"] = first["term"].astype(str).to_numpy()
        summary.loc[keys, "best_padj"] = first["padj"].astype(float).to_numpy()
        summary.loc[keys, "label"] = first["name"].astype(str).to_numpy()
    return summary.astype(_DTYPES)


def update_feature_table(adata: AnnData, key: str, summary: pd.DataFrame, *, n_features: int) -> None:
    """Write the :data:`SUMMARY_COLUMNS` of the annotated features (features not annotated keep theirs)."""
    cols = list(SUMMARY_COLUMNS)
    full = pd.DataFrame(SUMMARY_COLUMNS, index=[str(i) for i in range(n_features)])
    table = features_table(adata, key)
    if isinstance(table, pd.DataFrame):
        old = table.set_axis(table.index.astype(str)).reindex(full.index)
        for col in cols:
            if col in old.columns:
                full[col] = old[col].where(old[col].notna(), full[col]).to_numpy()
    full.loc[summary.index, cols] = summary[cols].to_numpy()
    write_columns(adata, key, full.astype(_DTYPES), writer="sl.tl.annotate_features", n_features=n_features)

"""Shared runner of :func:`annotate_features` and :func:`contrast`: DE + enrichment of many contrasts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._settings import resolve_n_jobs
from .._utils import progress
from . import _de_fast as fast
from . import _scfeaturelens as sfl
from ._de import Expression
from ._de_deseq2 import deseq2_engine
from ._enrich import GeneSets, collect, decoupler_method, ora, up_genes

if TYPE_CHECKING:
    pass

logger = logging.getLogger("sclens")
FEATURE_CHUNK = 128
DE_COLUMNS = ["log2fc", "stat", "pvalue", "padj", "base_mean"]


@dataclass
class Options:
    de_method: str
    enrichment: str
    flavor: str
    alpha: float
    de_alpha: float
    min_log2fc: float
    min_size: int
    max_size: int | None
    n_jobs: int


def check_options(**kw: Any) -> Options:
    """Validate the shared DE / enrichment arguments."""
    if kw["flavor"] not in ("sclens", "scfeaturelens"):
        msg = f"flavor must be 'sclens' or 'scfeaturelens', got {kw['flavor']!r}."
        raise ValueError(msg)
    if kw["de_method"] not in ("fast", "deseq2"):
        msg = f"de_method must be 'fast' or 'deseq2', got {kw['de_method']!r}."
        raise ValueError(msg)
    if not isinstance(kw["enrichment"], str) or not kw["enrichment"]:
        msg = f"enrichment must be 'ora' or a decoupler method name such as 'ulm', got {kw['enrichment']!r}."
        raise ValueError(msg)
    if kw["enrichment"] != "ora":
        import decoupler as dc

        if kw["enrichment"].startswith("_") or not callable(getattr(dc.mt, kw["enrichment"], None)):
            msg = f"Unknown enrichment {kw['enrichment']!r}: use 'ora' or a decoupler method such as 'ulm', 'mlm'."
            raise ValueError(msg)
    for name in ("alpha", "de_alpha"):
        if not 0 < kw[name] <= 1:
            msg = f"{name} must be in (0, 1], got {kw[name]!r}."
            raise ValueError(msg)
    if int(kw["min_size"]) < 1:
        msg = f"min_size must be >= 1, got {kw['min_size']!r}."
        raise ValueError(msg)
    return Options(**{**kw, "n_jobs": resolve_n_jobs(kw["n_jobs"])})


def _indices(m: sparse.csc_matrix) -> list[np.ndarray]:
    return [m.indices[m.indptr[j] : m.indptr[j + 1]] for j in range(m.shape[1])]


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

    ``top``: a list that receives, per chunk, the :func:`top_genes` table of the contrasts.
    """
    genes = pd.Index(expr.var_names)
    n_c = high.shape[1]
    if n_c == 0:
        return collect(_empty(gs, opt), gs, ids[:0], np.zeros((len(gs.terms), 0), bool)), {}
    de_tables: dict[str, pd.DataFrame] = {}
    tables: list[pd.DataFrame] = []
    stats_all = np.zeros((n_c, genes.size), dtype=np.float32) if opt.enrichment != "ora" else None
    study_all = np.zeros((n_c, genes.size), dtype=bool) if stats_all is not None else None
    tested_all = np.zeros((n_c, genes.size), dtype=bool) if stats_all is not None else None
    if opt.flavor == "scfeaturelens" or opt.de_method == "fast":
        scan = expr.scan([high, low], squares=opt.flavor == "scfeaturelens", weighted=opt.flavor == "sclens")
        n_h, n_l = np.diff(high.indptr), np.diff(low.indptr)
        if opt.flavor == "sclens":
            disp = fast.nb_dispersions(scan.z_mean, scan.z_var, scan.size_factors)
            bins, centres = fast.size_bins(scan.size_factors)
            onehot = fast.bin_onehot(bins, centres.size)
            nb_h, nb_l = (high.T @ onehot).toarray(), (low.T @ onehot).toarray()
    else:
        hi_idx, lo_idx = _indices(high), _indices(low)
    starts = range(0, n_c, FEATURE_CHUNK)
    for start in progress(starts, desc="annotating", unit="chunk"):
        sl_ = slice(start, min(start + FEATURE_CHUNK, n_c))
        if opt.flavor == "scfeaturelens":
            de, fc = sfl.welch(
                scan.zsums[0][sl_], scan.z2sums[0][sl_], n_h[sl_], scan.zsums[1][sl_], scan.z2sums[1][sl_], n_l[sl_]
            )
            study = sfl.study_sets(de, fc)
            res = sfl.go_test(de, fc, study, gs)
            keep = (res["n_overlap"] >= 1) & (res["pvalue"] <= opt.alpha)
        else:
            if opt.de_method == "fast":
                de = fast.nb_wald(
                    scan.sums[0][sl_], scan.sums[1][sl_], nb_h[sl_], nb_l[sl_], centres, disp,
                    scan.ssums[0][sl_], scan.ssums[1][sl_],
                )  # fmt: skip
            else:
                de = deseq2_engine(expr, hi_idx[sl_], lo_idx[sl_], n_jobs=opt.n_jobs)
            study = up_genes(de, de_alpha=opt.de_alpha, min_log2fc=opt.min_log2fc)
            if stats_all is None:
                res = ora(study, de.tested, gs, min_size=opt.min_size, max_size=opt.max_size)
                # tie-break for saturated p-values: mean log2 fold change of the term's tested genes
                lfc_sum = gs.matrix @ np.nan_to_num(de.log2fc).T
                res["mean_log2fc"] = lfc_sum / np.maximum(res["set_size"], 1)
                keep = res["pvalue"] < opt.alpha
            else:
                stats_all[sl_] = np.nan_to_num(de.stat)
                study_all[sl_] = study & de.tested
                tested_all[sl_] = de.tested
        if stats_all is None:
            tables.append(collect(res, gs, ids[sl_], keep))
        if top is not None:
            top.append(top_genes(de, ids[sl_], genes, de_alpha=opt.de_alpha))
        for j, f in enumerate(ids[sl_]):
            if int(f) in keep_de:
                de_tables[str(int(f))] = pd.DataFrame(
                    {c: getattr(de, c)[j].astype(float) for c in DE_COLUMNS}, index=genes.astype(str)
                )
    if stats_all is not None:
        flag = np.where(tested_all, 0.0, np.nan)
        de_all = fast.DEResult(flag, stats_all, flag, flag, flag)
        ids_str = [str(int(f)) for f in ids]
        res = decoupler_method(opt.enrichment, de_all, study_all, gs, ids_str, genes, min_size=opt.min_size)
        with np.errstate(invalid="ignore"):
            keep = (res["padj"] < opt.alpha) & (res["score"] > 0)
        tables.append(collect(res, gs, ids, keep))
    out = pd.concat(tables, ignore_index=True)
    order = "pvalue" if opt.enrichment == "ora" or opt.flavor == "scfeaturelens" else "padj"
    by = ["feature", order, *(["mean_log2fc"] if "mean_log2fc" in out.columns else []), "term"]
    asc = [True, True, *([False] if "mean_log2fc" in out.columns else []), True]
    out = out.sort_values(by, ascending=asc, kind="stable").reset_index(drop=True)
    return out, de_tables


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


def _empty(gs: GeneSets, opt: Options) -> dict[str, np.ndarray]:
    shape = (len(gs.terms), 0)
    keys = ["pvalue", "padj", "n_overlap", "set_size", "n_de"]
    keys.append("odds_ratio" if opt.enrichment == "ora" or opt.flavor == "scfeaturelens" else "score")
    return {k: np.zeros(shape) for k in keys}


def feature_summary(results: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
    """``n_terms``, ``best_term`` and a short ``label`` (best term's name) per feature."""
    idx = pd.Index([str(int(f)) for f in features])
    summary = pd.DataFrame({"n_terms": 0, "best_term": "", "label": ""}, index=idx)
    if len(results):
        counts = results.groupby("feature").size()
        first = results.groupby("feature").head(1).set_index("feature")
        for f, n in counts.items():
            summary.loc[str(f), ["n_terms", "best_term", "label"]] = [
                int(n),
                str(first.loc[f, "term"]),
                _short(str(first.loc[f, "name"])),
            ]
    return summary.astype({"n_terms": np.int64, "best_term": str, "label": str})


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 3].rstrip() + "..."


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values and turn lists into arrays so the dict survives ``write_h5ad``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = clean_params(v)
        elif isinstance(v, (list, tuple)):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out

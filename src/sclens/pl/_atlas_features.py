"""The feature side of :func:`sclens.pl.atlas`'s payload: table rows, genes, terms and the evidence per feature.

Everything here is short lists rounded to a few significant digits, keyed by the feature number as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .._columns import COLUMNS
from .._columns import alignment_columns as registered_alignment_columns
from .._readers import has_themes, theme_rows
from ._atlas_data import round_

# registered columns marked `atlas` (term clustering, null controls, stability): shown in the table when present;
# alignment columns come from the alignment result
EXTRA_COLUMNS = tuple(c.name for c in COLUMNS if c.atlas)
LABELS = {
    "n_term_clusters": "term themes", "batch_driven": "batch-driven", "annotation_fdr": "null FDR",
    "null_terms": "null terms", "stability": "stability",
}  # fmt: skip
STABILITY = ("seed stability (|cos| of its match in a refit)", "sl.tl.feature_stability")
SUFFIXES = (("_auroc", "AUROC"), ("_f1", "F1"), ("_best", "best match"))


def column_label(col: str) -> str:
    """Readable header of a features-table column (``cell_type_auroc`` -> ``cell type AUROC``)."""
    if col in LABELS:
        return LABELS[col]
    for suffix, word in SUFFIXES:
        if col.endswith(suffix) and len(col) > len(suffix):
            return f"{col[: -len(suffix)].replace('_', ' ')} {word}"
    return col.replace("_", " ")


def alignment_columns(alignment: Mapping) -> list[str]:
    """Features-table columns written by the ``feature_alignment`` result ``alignment`` (empty: none)."""
    params = alignment.get("params", {})
    scored = [str(c) for key in ("groupby", "technical") for c in np.atleast_1d(params.get(key, []))]
    return registered_alignment_columns(scored) + (["batch_driven"] if np.size(params.get("technical", [])) else [])


def extra_columns(table: pd.DataFrame, columns: Any, *, aligned: list[str]) -> list[str]:
    """Columns present of the alignment result (``aligned``), term clustering, nulls, stability; and those asked."""
    shown = {*aligned, *EXTRA_COLUMNS}
    found = [c for c in table.columns if c in shown]
    asked = [] if columns is None else [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in asked if c not in table.columns]
    if missing:
        msg = f"columns {missing} not in the features table; available: {list(table.columns)}."
        raise KeyError(msg)
    return list(dict.fromkeys([*found, *asked]))


def _text(t: pd.DataFrame, col: str, n: int) -> list[str]:
    return t[col].fillna("").astype(str).tolist() if col in t else [""] * n


def feature_rows(table: pd.DataFrame, features: np.ndarray, columns: list[str]) -> dict[str, list]:
    """Table columns of the shown features, column-wise; the label falls back to the best term."""
    t = table.reindex([str(f) for f in features])
    label = pd.Series(_text(t, "label", features.size), index=t.index)
    if "best_term" in t:
        label = label.where(label != "", t["best_term"].fillna("").astype(str))
    activity = t["frequency"] if "frequency" in t else pd.Series(np.nan, index=t.index)
    out: dict[str, list] = {
        "id": [int(f) for f in features],
        "label": label.tolist(),
        "kind": _text(t, "kind", features.size),
        "top_group": _text(t, "top_group", features.size),
        "activity": [round_(v, 3) for v in activity],
        "n_terms": [int(v) for v in t["n_terms"].fillna(0)] if "n_terms" in t else [0] * features.size,
    }
    for col in columns:
        values = t[col]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            out[col] = values.fillna("").astype(str).tolist()
        else:
            out[col] = [round_(v, 3) for v in values]
    return out


def trust(table: pd.DataFrame, features: np.ndarray, *, aligned: list[str]) -> dict[str, list]:
    """Per feature the stored evidence on how far to trust it: ``[what, value, where it comes from]`` rows.

    Read from the features table: the ``aligned`` columns ``<obs>_best`` / ``_auroc`` / ``_f1`` and
    ``batch_driven`` (:func:`sclens.tl.feature_alignment`), ``annotation_fdr`` and ``null_terms``
    (:func:`sclens.tl.annotation_null`), ``stability*`` columns; absent columns are left out.
    """
    t = table.reindex([str(f) for f in features])
    groups = [c[: -len("_best")] for c in aligned if c.endswith("_best") and c in t and f"{c[:-5]}_auroc" in t]
    driven = "batch_driven" in aligned and "batch_driven" in t
    out: dict[str, list] = {}
    for f, (_, row) in zip(features, t.iterrows(), strict=True):
        rows = []
        for g in groups:
            auc, f1 = round_(row[f"{g}_auroc"], 3), round_(row.get(f"{g}_f1", np.nan), 3)
            if row[f"{g}_best"] not in ("", None) and auc is not None:
                value = f"{row[f'{g}_best']}: AUROC {auc}" + (f", F1 {f1}" if f1 is not None else "")
                rows.append([f"best match in obs['{g}']", value, "sl.tl.feature_alignment"])
        if driven and pd.notna(row["batch_driven"]) and bool(row["batch_driven"]):
            rows.append(["batch-driven", "yes: a technical column matches it best", "sl.tl.feature_alignment"])
        for col, what in (("annotation_fdr", "annotation null FDR"), ("null_terms", "terms kept under the null")):
            if col in t and round_(row[col], 3) is not None:
                rows.append([what, round_(row[col], 3), "sl.tl.annotation_null"])
        for col in (c for c in t.columns if str(c).startswith("stability")):
            if round_(row[col], 3) is not None:
                what, src = (
                    STABILITY if col == "stability" else (column_label(str(col)), "stored in the features table")
                )
                rows.append([what, round_(row[col], 3), src])
        if rows:
            out[str(int(f))] = rows
    return out


def term_rule(params: Mapping, results: pd.DataFrame | None) -> str:
    """Return the rule that kept a feature's terms, in words, from the annotation's ``params``.

    For ``enrichment="ora"`` the kept ``results`` tell which p-value the threshold applied to: the
    adjusted one (BH within the feature) when every kept term has ``padj < alpha``, else the raw one.
    """
    if "term_rule" in params:
        return str(params["term_rule"])
    if not params:
        return ""
    alpha = params.get("alpha")
    if params.get("flavor") == "scfeaturelens":
        return f"Mann-Whitney p \u2264 {alpha} and \u2265 1 up-regulated gene in the term (scFeatureLens; uncorrected)"
    method = str(params.get("enrichment", "ora"))
    if method != "ora":
        return f"decoupler {method} on the DE statistics: BH padj < {alpha} and score > 0"
    on_padj = isinstance(results, pd.DataFrame) and "padj" in results and bool((results["padj"] < alpha).all())
    test = f"over-representation of the genes up-regulated at DE padj < {params.get('de_alpha')}"
    return (
        f"{test}: term padj < {alpha} (BH within the feature)"
        if on_padj
        else f"{test}: term p < {alpha}, not corrected across terms"
    )


def terms(results: pd.DataFrame | None, features: np.ndarray, max_terms: int) -> dict[str, Any]:
    """Per feature its first ``max_terms`` term themes as ``[term index, pvalue, padj, similar]``; term ids and names.

    A theme (term cluster of :func:`sclens.tl.term_redundancy`) is shown by its representative, its
    most specific term; ``similar`` counts the other kept terms of the theme; themes come in the order
    of their best term (:func:`sclens.get.feature_terms` with ``themes=True``). Results without term
    clusters give every kept term by p-value with ``similar = 0``.
    """
    if results is None or results.empty:
        return {"ids": [], "names": [], "by_feature": {}}
    res = results[results["feature"].astype(int).isin(features)]
    if has_themes(res):
        res = theme_rows(res)
        res = res.assign(_n=res["n_theme_terms"] - 1)
    else:
        res = res.assign(_n=0)
    res = res.groupby("feature", sort=False).head(max_terms)
    ids, codes = np.unique(res["term"].astype(str).to_numpy(), return_inverse=True)
    names = res.assign(_c=codes).drop_duplicates("_c").set_index("_c")["name"] if "name" in res else None
    by: dict[str, list] = {}
    padj = res["padj"] if "padj" in res else pd.Series(np.nan, index=res.index)
    rows = zip(res["feature"].astype(int), codes, res["pvalue"], padj, res["_n"], strict=True)
    for f, c, p, q, n in rows:
        by.setdefault(str(f), []).append([int(c), round_(p, 3), round_(q, 3), int(n)])
    name_list = [str(names.get(i, ids[i])) if names is not None else str(ids[i]) for i in range(ids.size)]
    return {"ids": ids.tolist(), "names": name_list, "by_feature": by}


def genes(annotation: Mapping, features: np.ndarray, n_genes: int) -> dict[str, list]:
    """Per feature its top up-regulated genes as ``[gene, log2fc, padj]``, by padj then log2fc.

    The first ``n_genes`` of ``top_genes`` (:func:`sclens.tl.annotate_features`), else of the kept ``de``
    tables (``log2fc > 0``, ``padj < 0.05``, by statistic).
    """
    keep = {int(f) for f in features}
    parts = []
    top = annotation.get("top_genes")
    if isinstance(top, pd.DataFrame) and not top.empty:
        parts.append(top[top["feature"].astype(int).isin(keep)].groupby("feature", sort=False).head(n_genes))
    have = set(parts[0]["feature"].astype(int)) if parts else set()
    for f, de in (annotation.get("de") or {}).items():
        if int(f) in keep and int(f) not in have:
            up = de[(de["log2fc"] > 0) & (de["padj"] < 0.05)].sort_values("stat", ascending=False).head(n_genes)
            parts.append(up.rename_axis("gene").reset_index().assign(feature=int(f)))
    if not parts:
        return {}
    g = pd.concat([p[["feature", "gene", "log2fc", "padj"]] for p in parts], ignore_index=True)
    g = g.assign(feature=g["feature"].astype(int), _q=g["padj"].fillna(1.0), _l=-g["log2fc"])
    g = g.sort_values(["feature", "_q", "_l"], kind="stable")
    rows = [[str(n), round_(v, 3), round_(q, 3)] for n, v, q in zip(g["gene"], g["log2fc"], g["padj"], strict=True)]
    starts = np.flatnonzero(np.r_[True, np.diff(g["feature"].to_numpy()) != 0])
    ends = np.r_[starts[1:], len(g)]
    ids = g["feature"].to_numpy()[starts]
    return {str(f): rows[a:b] for f, a, b in zip(ids, starts, ends, strict=True)}


def skipped(annotation: Mapping, table: pd.DataFrame, features: np.ndarray) -> dict[str, str]:
    """Why a shown feature has no annotation: ``uns[annotation_key]['skipped']`` or a ``skip_reason`` column."""
    keep = {int(f) for f in features}
    out: dict[str, str] = {}
    if "skip_reason" in table:
        reasons = table["skip_reason"].dropna().astype(str)
        out.update({k: v for k, v in reasons.items() if v and k.isdigit() and int(k) in keep})
    stored = annotation.get("skipped")
    if isinstance(stored, pd.DataFrame) and {"feature", "reason"} <= set(stored.columns):
        for _, r in stored[stored["feature"].astype(int).isin(keep)].iterrows():
            sizes = f" ({r['n_high']} high, {r['n_low']} low cells)" if {"n_high", "n_low"} <= set(r.index) else ""
            out.setdefault(str(int(r["feature"])), f"{r['reason']}{sizes}")
    return out


def specificity(result: Mapping, features: np.ndarray) -> dict[str, Any]:
    """Mean activation per group (the ``feature_specificity`` result's ``group_means``) of each shown feature."""
    means = result.get("group_means")
    means = means.T if isinstance(means, pd.DataFrame) else None  # stored groups x features
    if means is None or means.empty:
        return {"groups": [], "groupby": "", "by_feature": {}}
    m = means.reindex([str(f) for f in features])
    by = {str(f): [round_(v, 3) for v in row] for f, row in zip(features, m.to_numpy(), strict=True)}
    groupby = str(result.get("params", {}).get("groupby", ""))
    return {"groups": [str(c) for c in means.columns], "groupby": groupby, "by_feature": by}


def steering(tables: dict[int, pd.DataFrame], features: np.ndarray, n_rows: int) -> dict[str, list]:
    """Per steered feature its kept terms ``[name, term, pvalue]`` (steered vs normal cells)."""
    out: dict[str, list] = {}
    for f, res in tables.items():
        if int(f) not in set(features.tolist()) or res is None or len(res) == 0:
            continue
        res = res.sort_values("pvalue" if "pvalue" in res else "padj").head(n_rows)
        name = res["name"] if "name" in res else res["term"]
        p = res["pvalue"] if "pvalue" in res else res["padj"]
        out[str(int(f))] = [[str(n), str(t), round_(v, 3)] for n, t, v in zip(name, res["term"], p, strict=True)]
    return out

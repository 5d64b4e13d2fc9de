"""The compact data payload of :func:`sclens.pl.atlas`: one JSON-able dict per SAE run and annotation.

Arrays travel base64-encoded: embedding coordinates quantised to 16 bits, activations of the shown
cells stored sparsely per feature (cell index ``uint16``, value quantised to 8 bits of the feature's
maximum), everything else as short lists rounded to a few significant digits.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

MAX_CELLS = 65535  # cell indices travel as uint16
EXTRA_COLUMNS = ("n_term_clusters", "annotation_fdr")  # term clustering, null controls: shown when present


def b64(a: np.ndarray) -> str:
    """Little-endian bytes of ``a`` as base64 text."""
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _round(x: Any, digits: int = 4) -> Any:
    x = float(x)
    if not np.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def sample_cells(n_obs: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of at most ``max_cells`` cell indices."""
    if n_obs <= max_cells:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, size=max_cells, replace=False))


def embedding(adata: AnnData, basis: str, cells: np.ndarray) -> dict[str, Any]:
    """2-D coordinates of ``cells`` in ``obsm[f"X_{basis}"]`` (or ``obsm[basis]``), quantised to uint16."""
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        msg = (
            f"`adata.obsm[{key!r}]` not found; available: {list(adata.obsm.keys())}. "
            "Compute it first, e.g. `sc.pp.neighbors(adata, use_rep='X_scVI'); sc.tl.umap(adata)`, or pass `basis=`."
        )
        raise KeyError(msg)
    xy = np.asarray(adata.obsm[key])[cells, :2].astype(np.float64)
    lo, hi = xy.min(0), xy.max(0)
    q = np.rint((xy - lo) / np.where(hi > lo, hi - lo, 1.0) * 65535).astype(np.uint16)
    return {"x": b64(q[:, 0]), "y": b64(q[:, 1]), "n": int(cells.size), "basis": key}


def activations(acts: sparse.csr_matrix, cells: np.ndarray, features: np.ndarray) -> dict[str, Any]:
    """Non-zero ``acts`` (cells x features) of ``features`` on ``cells``: indices / 8-bit values and offsets."""
    act = acts[cells][:, features].tocsc()
    act.sort_indices()
    vmax = act.max(axis=0).toarray().ravel().astype(np.float64)  # activations are non-negative
    per_entry = np.repeat(np.where(vmax > 0, vmax, 1.0), np.diff(act.indptr))
    vals = np.clip(np.rint(act.data / per_entry * 255), 1, 255).astype(np.uint8)
    return {
        "idx": b64(act.indices.astype(np.uint16)),
        "val": b64(vals),
        "ptr": act.indptr.astype(int).tolist(),
        "max": [_round(v) for v in vmax],
    }


def feature_rows(table: pd.DataFrame, features: np.ndarray, columns: list[str]) -> dict[str, list]:
    """Table columns of the shown features, column-wise; the label falls back to the best term."""
    t = table.reindex([str(f) for f in features])
    label = t["label"] if "label" in t else pd.Series("", index=t.index)
    label = label.fillna("").astype(str)
    if "best_term" in t:
        label = label.where(label != "", t["best_term"].fillna("").astype(str))
    activity = t["frequency"] if "frequency" in t else pd.Series(np.nan, index=t.index)
    out: dict[str, list] = {
        "id": [int(f) for f in features],
        "label": label.tolist(),
        "kind": t["kind"].fillna("").astype(str).tolist() if "kind" in t else [""] * features.size,
        "top_group": t["top_group"].fillna("").astype(str).tolist() if "top_group" in t else [""] * features.size,
        "activity": [_round(v, 3) for v in activity],
        "n_terms": [int(v) for v in t["n_terms"].fillna(0)] if "n_terms" in t else [0] * features.size,
    }
    for col in columns:
        values = t[col]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            out[col] = values.fillna("").astype(str).tolist()
        else:
            out[col] = [_round(v, 3) for v in values]
    return out


def alignment_columns(alignment: Mapping) -> list[str]:
    """Features-table columns written by the ``feature_alignment`` result ``alignment`` (empty: none)."""
    params = alignment.get("params", {})
    scored = [str(c) for key in ("groupby", "technical") for c in np.atleast_1d(params.get(key, []))]
    return [f"{c}_{s}" for c in scored for s in ("best", "auroc", "f1")] + (
        ["batch_driven"] if np.size(params.get("technical", [])) else []
    )


def extra_columns(table: pd.DataFrame, columns: Any, *, alignment: Mapping) -> list[str]:
    """Columns of the alignment result, term clustering and null controls present in the table, and those asked."""
    shown = {*alignment_columns(alignment), *EXTRA_COLUMNS}
    found = [c for c in table.columns if c in shown]
    asked = [] if columns is None else [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in asked if c not in table.columns]
    if missing:
        msg = f"columns {missing} not in the features table; available: {list(table.columns)}."
        raise KeyError(msg)
    return list(dict.fromkeys([*found, *asked]))


def terms(results: pd.DataFrame | None, features: np.ndarray, max_terms: int) -> dict[str, Any]:
    """Per feature its first ``max_terms`` kept terms as ``[term index, pvalue, padj]``; term ids and names."""
    if results is None or results.empty:
        return {"ids": [], "names": [], "by_feature": {}}
    res = results[results["feature"].astype(int).isin(features)]
    res = res.groupby("feature", sort=False).head(max_terms)
    ids, codes = np.unique(res["term"].astype(str).to_numpy(), return_inverse=True)
    names = res.assign(_c=codes).drop_duplicates("_c").set_index("_c")["name"] if "name" in res else None
    by: dict[str, list] = {}
    padj = res["padj"] if "padj" in res else pd.Series(np.nan, index=res.index)
    for f, c, p, q in zip(res["feature"].astype(int), codes, res["pvalue"], padj, strict=True):
        by.setdefault(str(f), []).append([int(c), _round(p, 3), _round(q, 3)])
    name_list = [str(names.get(i, ids[i])) if names is not None else str(ids[i]) for i in range(ids.size)]
    return {"ids": ids.tolist(), "names": name_list, "by_feature": by}


def genes(annotation: dict, features: np.ndarray, n_genes: int) -> dict[str, list]:
    """Per feature its top up-regulated genes as ``[gene, log2fc]`` (``top_genes``, else ``de`` tables)."""
    keep = {int(f) for f in features}
    out: dict[str, list] = {}
    top = annotation.get("top_genes")
    if isinstance(top, pd.DataFrame) and not top.empty:
        for f, g in top[top["feature"].astype(int).isin(keep)].groupby("feature", sort=False):
            out[str(int(f))] = [[str(n), _round(v, 3)] for n, v in zip(g["gene"][:n_genes], g["log2fc"], strict=False)]
    for f, de in (annotation.get("de") or {}).items():
        if int(f) in keep and str(int(f)) not in out:
            up = de[(de["log2fc"] > 0) & (de["padj"] < 0.05)].sort_values("stat", ascending=False).head(n_genes)
            out[str(int(f))] = [[str(n), _round(v, 3)] for n, v in zip(up.index, up["log2fc"], strict=True)]
    return out


def specificity(result: Mapping, features: np.ndarray) -> dict[str, Any]:
    """Mean activation per group (the ``feature_specificity`` result's ``group_means``) of each shown feature."""
    means = result.get("group_means")
    means = means.T if isinstance(means, pd.DataFrame) else None  # stored groups x features
    if means is None or means.empty:
        return {"groups": [], "groupby": "", "by_feature": {}}
    m = means.reindex([str(f) for f in features])
    by = {str(f): [_round(v, 3) for v in row] for f, row in zip(features, m.to_numpy(), strict=True)}
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
        out[str(int(f))] = [[str(n), str(t), _round(v, 3)] for n, t, v in zip(name, res["term"], p, strict=True)]
    return out


def _similarity_rows(results: pd.DataFrame | None, space: Mapping) -> tuple[np.ndarray, Any, str]:
    """Feature ids and a function ``i -> similarity of feature i to every feature`` (higher is closer)."""
    if "umap" in space:
        ids = np.asarray(space["features"]).astype(int)
        xy = np.asarray(space["umap"], dtype=np.float64)
        return ids, lambda i: -np.sqrt(((xy - xy[i]) ** 2).sum(1)), "feature_space"
    if isinstance(results, pd.DataFrame) and not results.empty:
        ids, rows = np.unique(results["feature"].astype(int).to_numpy(), return_inverse=True)
        _, cols = np.unique(results["term"].astype(str).to_numpy(), return_inverse=True)
        mat = sparse.csr_matrix((np.ones(rows.size), (rows, cols))).astype(bool).astype(np.float64)
        size = np.asarray(mat.sum(1)).ravel()

        def jaccard(i: int) -> np.ndarray:
            inter = (mat @ mat[i].T).toarray().ravel()
            return inter / np.maximum(size + size[i] - inter, 1)

        return ids, jaccard, "jaccard"
    return np.zeros(0, int), None, ""


def neighbours(results: pd.DataFrame | None, space: Mapping, features: np.ndarray, n_neighbours: int) -> dict[str, Any]:
    """Closest features in GO-term space: UMAP distance in ``space`` if given, else Jaccard of term sets."""
    ids, similarity, method = _similarity_rows(results, space)
    shown = np.isin(ids, features)
    by: dict[str, list] = {}
    for i in np.flatnonzero(shown):
        sim = np.where(shown, similarity(i), -np.inf)
        sim[i] = -np.inf
        order = np.argsort(-sim, kind="stable")[:n_neighbours]
        order = order[np.isfinite(sim[order]) & ((sim[order] > 0) | (method == "feature_space"))]
        by[str(ids[i])] = [[int(ids[j]), _round(sim[j], 3)] for j in order]
    return {"method": method, "by_feature": by}

"""The one layout of stored results and its checked readers (shared by ``tl``, ``get`` and ``pl``).

Every result a tool stores is a dict of tables and a ``params`` dict::

    adata.uns[parent][key_added] = {<tables>..., "params": {..., "sae_run_id": ..., "annotation_run_id": ...}}

Results derived from an SAE run (specificity, alignment, annotation nulls) live inside the run
(``parent`` = its ``sae_key``), the feature space inside the annotation (``parent`` = its
``annotation_key``); an annotation is a top-level entry (no parent) that records the SAE run it
came from and carries its own ``run_id``. :data:`RESULTS` names every kind of result, the tool that
writes it and the tables it holds; :func:`store_result` writes one and :func:`result` reads one
back, refusing a result whose recorded run ids no longer match (with the call to re-run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _provenance as provenance
from ._utils import check_adata, check_sae_keys

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


@dataclass(frozen=True)
class ResultKind:
    """One kind of stored result: the tool that writes it, where it lives and what it holds.

    ``parent``: the parameter of ``made_by`` naming the entry it lives in (``"sae_key"``,
    ``"annotation_key"``), or ``None`` for a top-level entry; ``tables``: its entries besides
    ``params`` that every reader may rely on; ``args``: the required arguments, for the message
    that says what to re-run; ``is_run``: it carries its own ``run_id`` (recorded by the results
    derived from it); ``detached``: it is written into a new AnnData that does not hold the SAE run
    (the steering tools' output), so the run ids it records are kept but cannot be checked there.
    """

    made_by: str
    parent: str | None
    tables: tuple[str, ...]
    args: str = ""
    is_run: bool = False
    detached: bool = False


# every kind of stored result: the structure test checks each tool writes its kind in this layout
RESULTS: dict[str, ResultKind] = {
    "annotation": ResultKind("sl.tl.annotate_features", None, ("results",), "gene_sets=...", is_run=True),
    "specificity": ResultKind("sl.tl.feature_specificity", "sae_key", ("group_means",), "groupby=..."),
    "alignment": ResultKind("sl.tl.feature_alignment", "sae_key", ("table",), "groupby=..."),
    "annotation_null": ResultKind("sl.tl.annotation_null", "sae_key", ("table",), "gene_sets=..."),
    "feature_space": ResultKind("sl.tl.feature_space", "annotation_key", ("features", "umap", "category")),
    "contrast": ResultKind("sl.tl.contrast", None, ("results", "de"), "groupby=..., groups=..., gene_sets=..."),
    "batch_steer": ResultKind(
        "sl.tl.batch_steer", None, ("scores", "features", "clamped_to", "baseline"), "batch_key=..."
    ),
    "stability": ResultKind("sl.tl.feature_stability", "sae_key", ("seeds", "matched_cosine", "matched_feature")),
    "probing": ResultKind("sl.tl.sparse_probing", "sae_key", ("results", "summary"), "groupby=..."),
    "absorption": ResultKind("sl.tl.feature_absorption", "sae_key", ("results",), "fine=..., coarse=..."),
    "spurious": ResultKind("sl.tl.spurious_removal", "sae_key", ("results",), "groupby=..., technical=..."),
    "evaluation": ResultKind("sl.tl.evaluate", "sae_key", ("scorecard",), "groupby=..."),
    "steer": ResultKind("sl.tl.steer", None, ("features", "baseline", "dose_response"), "features=...", detached=True),
    "steer_towards": ResultKind(
        "sl.tl.steer_towards",
        None,
        ("features", "objective", "target_centroid", "baseline", "dose_response"),
        "source=..., target=...",
        detached=True,
    ),
}


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values and turn lists into arrays so the dict survives ``write_h5ad``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            out[k] = clean_params(v)
        elif isinstance(v, (list, tuple)):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out


def _where(key: str, parent: str | None) -> str:
    return f"`adata.uns[{parent!r}][{key!r}]`" if parent is not None else f"`adata.uns[{key!r}]`"


def _rerun(kind: ResultKind, key: str, parent: str | None) -> str:
    parts = ["adata", kind.args, f"{kind.parent}={parent!r}" if kind.parent is not None else "", f"key_added={key!r}"]
    return f"{kind.made_by}({', '.join(p for p in parts if p)})"


def provenance_params(adata: AnnData, kind: str, *, parent: str | None, sae_key: str | None = None) -> dict[str, Any]:
    """Return the run ids a new result of ``kind`` under ``parent`` records (``sae_key``: for top-level results)."""
    spec = RESULTS[kind]
    if spec.parent == "annotation_key":
        ann = adata.uns[parent]["params"]
        out = {"annotation_key": parent, "annotation_run_id": provenance.run_id(adata, parent)}
        out.update({k: ann[k] for k in ("sae_key", "sae_run_id") if k in ann})
    else:
        key = parent if spec.parent == "sae_key" else sae_key
        out = {"sae_key": key, "sae_run_id": provenance.run_id(adata, key)} if key is not None else {}
    return {k: v for k, v in out.items() if v is not None}


def store_result(
    adata: AnnData, kind: str, *, key: str, parent: str | None, tables: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``{**tables, "params": {**params, <run ids>}}`` as ``adata.uns[parent][key]`` (the one layout).

    For ``parent=None`` (a top-level result) ``params`` must name its ``sae_key``; a kind that is a run
    (the annotation) gets a fresh ``run_id``; a detached kind keeps the ``sae_run_id`` given in
    ``params`` (``adata`` does not hold the run). Returns what was stored.
    """
    spec = RESULTS[kind]
    missing = set(spec.tables) - set(tables)
    if missing or "params" in tables:  # a programming error in the writer, not a user error
        msg = f"store_result({kind!r}): tables must be {spec.tables} without 'params', got {sorted(tables)}."
        raise RuntimeError(msg)
    ids = {} if spec.detached else provenance_params(adata, kind, parent=parent, sae_key=params.get("sae_key"))
    value = {**tables, "params": clean_params({**params, **ids})}
    if spec.is_run:
        value["run_id"] = provenance.new_run_id()
    holder = adata.uns if parent is None else adata.uns[parent]
    holder.pop(f"{key}_params", None)  # the params beside the table in the layout before this one
    holder[key] = value
    return value


def result(
    adata: AnnData, kind: str, *, key: str, parent: str | None = None, missing_ok: bool = False
) -> dict[str, Any] | None:
    """``adata.uns[parent][key]`` (``adata.uns[key]`` for a top-level kind) after checks.

    It must exist (``missing_ok``: ``None`` when it does not), be in the one layout with every
    table of ``kind``, and its recorded ``sae_run_id`` / ``annotation_run_id`` must be those of the
    runs stored now (not checked for a detached kind); otherwise a ``KeyError`` / ``ValueError``
    says which call to re-run. Results without recorded ids (written before run ids existed) are
    accepted.
    """
    check_adata(adata)
    spec = RESULTS[kind]
    where, rerun = _where(key, parent), _rerun(spec, key, parent)
    if spec.parent == "annotation_key" and parent in adata.uns:  # a stale annotation: re-run it first
        result(adata, "annotation", key=parent)
    holder = adata.uns if parent is None else adata.uns.get(parent)
    value = holder.get(key) if isinstance(holder, Mapping) else None
    if value is None and missing_ok:
        return None
    if value is None:
        msg = f"{where} not found; run `{rerun}` first."
        raise KeyError(msg)
    params = value.get("params") if isinstance(value, Mapping) else None
    missing = [t for t in spec.tables if t not in value] if isinstance(value, Mapping) else list(spec.tables)
    if not isinstance(params, Mapping) or missing:
        lacks = "a 'params' dict" if not isinstance(params, Mapping) else f"the table(s) {missing}"
        msg = (
            f"{where} is a {type(value).__name__} without {lacks}: it was written by another tool or by an "
            f"earlier sclens version in another layout. Re-run `{rerun}`."
        )
        raise ValueError(msg)
    if not spec.detached:
        check_ids(adata, params, what=where, rerun=rerun, sae_key=parent if spec.parent == "sae_key" else "sae")
    return value


def check_ids(adata: AnnData, params: Mapping[str, Any], *, what: str, rerun: str, sae_key: str = "sae") -> None:
    """Refuse a result whose recorded ``sae_run_id`` / ``annotation_run_id`` is not the current run's."""
    sae_key = str(params.get("sae_key", params.get("key", sae_key)))
    provenance.check_run_id(adata, key=sae_key, recorded=params.get("sae_run_id"), what=what, rerun=rerun)
    if "annotation_run_id" in params:
        ann_key = str(params.get("annotation_key", "sae_go"))
        provenance.check_run_id(
            adata, key=ann_key, recorded=params["annotation_run_id"], what=what, rerun=rerun, run="annotation"
        )


def sae_run(
    adata: AnnData,
    sae_key: str = "sae",
    *,
    need: tuple[str, ...] = ("params", "weights"),
    arrays: tuple[str, ...] = (),
    activations: bool = False,
) -> dict[str, Any]:
    """``adata.uns[sae_key]`` after checking it holds an SAE run with the entries ``need``.

    ``arrays``: entries of ``run["weights"]`` that must be present (e.g. ``("W_dec",)``); ``activations``:
    ``adata.obsm[f"X_{sae_key}"]`` must be present too (checked first, as :func:`sclens._utils.sae_activations`).
    A baseline run (``sl.tl.baseline_features``) passes unless ``"weights"`` is in ``need``.
    """
    check_adata(adata)
    if activations:
        check_sae_keys(adata, sae_key)
    if sae_key not in adata.uns:
        runs = [k for k, v in adata.uns.items() if isinstance(v, dict) and "weights" in v and "params" in v]
        msg = (
            f"`adata.uns[{sae_key!r}]` not found; SAE runs present: {runs or 'none'}. "
            f"Run `sl.tl.fit_sae(adata, use_rep=..., key_added={sae_key!r})` first."
        )
        raise KeyError(msg)
    run = adata.uns[sae_key]
    source = run.get("params", {}).get("source") if isinstance(run, Mapping) else None
    if source == "baseline_features" and "weights" in need:
        method = run["params"].get("method", "linear")
        msg = (
            f"`adata.uns[{sae_key!r}]` is a baseline ({method.upper()}) written by `sl.tl.baseline_features`, not "
            f"an SAE: there is no encoder to rebuild. Its components are in `adata.uns[{sae_key!r}]['components']`; "
            "fit an SAE with `sl.tl.fit_sae` to get one."
        )
        raise TypeError(msg)
    missing = [n for n in need if not isinstance(run, Mapping) or n not in run]
    if missing:
        msg = f"`adata.uns[{sae_key!r}]` lacks {missing}; it was not written by `sl.tl.fit_sae` / `sl.tl.encode`."
        raise KeyError(msg)
    for name in set(need) & {"params", "weights", "metrics"}:
        if not isinstance(run[name], Mapping):
            msg = (
                f"`adata.uns[{sae_key!r}][{name!r}]` is a {type(run[name]).__name__}, not a dict; "
                "refit with `sl.tl.fit_sae`."
            )
            raise TypeError(msg)
    weights = run.get("weights", {}) if isinstance(run, Mapping) else {}
    for name in arrays:
        if not isinstance(weights, Mapping) or name not in weights:
            msg = f"`adata.uns[{sae_key!r}]['weights'][{name!r}]` not found; refit with `sl.tl.fit_sae`."
            raise KeyError(msg)
    return run


def features_table(adata: AnnData, sae_key: str = "sae", *, required: bool = False) -> pd.DataFrame | None:
    """Return the features table ``adata.uns[sae_key]['features']`` (``None`` when absent, unless ``required``)."""
    run = adata.uns.get(sae_key)
    table = run.get("features") if isinstance(run, Mapping) else None
    if table is None and required:
        msg = (
            f"`adata.uns[{sae_key!r}]['features']` not found; run `sl.tl.fit_sae(adata, ..., key_added={sae_key!r})` "
            "(or pass the `sae_key` of the SAE run)."
        )
        raise KeyError(msg)
    return table


def annotation(adata: AnnData, annotation_key: str = "sae_go", *, sae_key: str | None = None) -> dict[str, Any]:
    """Return the annotation ``adata.uns[annotation_key]`` (:func:`result`), of the SAE run ``sae_key`` if given."""
    ann = result(adata, "annotation", key=annotation_key)
    made_from = str(ann["params"].get("sae_key", "sae"))
    if sae_key is not None and made_from != sae_key:
        ids = f" (run {ann['params'].get('sae_run_id', 'unknown')}, not run {provenance.run_id(adata, sae_key)})"
        msg = (
            f"`adata.uns[{annotation_key!r}]` annotates the SAE run {made_from!r}, not {sae_key!r}{ids}; pass "
            f"sae_key={made_from!r} or re-run `sl.tl.annotate_features(adata, gene_sets=..., sae_key={sae_key!r})`."
        )
        raise ValueError(msg)
    return ann


def annotation_results(adata: AnnData, annotation_key: str, namespaces: Sequence[str] | None) -> pd.DataFrame:
    """``adata.uns[annotation_key]['results']`` restricted to ``namespaces``, after checks."""
    key = annotation_key
    res = annotation(adata, key)["results"]
    missing = {"feature", "term"} - set(res.columns)
    if missing:
        msg = f"`adata.uns[{key!r}]['results']` lacks column(s) {sorted(missing)}; rerun `sl.tl.annotate_features`."
        raise KeyError(msg)
    if namespaces is not None:
        namespaces = [namespaces] if isinstance(namespaces, str) else list(namespaces)
        if "namespace" not in res.columns:
            msg = f"`adata.uns[{key!r}]['results']` has no 'namespace' column; pass namespaces=None."
            raise KeyError(msg)
        res = res[res["namespace"].astype(str).isin(namespaces)]
    return res


def steering_info(adata: AnnData, steer_key: str = "steer") -> dict[str, Any]:
    """Return the record ``adata.uns[steer_key]`` (:func:`result`) of an output of ``steer`` / ``steer_towards``."""
    check_adata(adata)
    info = adata.uns.get(steer_key)
    if not isinstance(info, Mapping) or "condition" not in adata.obs.columns:
        msg = (
            f"This AnnData is not the output of `sl.tl.steer` / `sl.tl.steer_towards` (needs "
            f"`uns[{steer_key!r}]` and `obs['condition']`); pass the returned AnnData and its `key_added`."
        )
        raise KeyError(msg)
    return result(adata, "steer_towards" if "objective" in info else "steer", key=steer_key)


def scanpy_colors(adata: AnnData, groupby: str) -> Any:
    """Return scanpy's ``adata.uns[f"{groupby}_colors"]`` (``None`` when absent)."""
    return adata.uns.get(f"{groupby}_colors")


THEME_COLUMNS = ("term_cluster", "representative")  # added to annotation results by the term clustering


def has_themes(results: pd.DataFrame) -> bool:
    """Whether annotation ``results`` carry term clusters (results stored before them do not)."""
    return set(THEME_COLUMNS) <= set(results.columns)


def theme_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (feature, term cluster): its representative, with ``n_theme_terms`` (kept terms in the cluster).

    Sorted by feature then cluster number (clusters are numbered in the order of their best term).
    """
    size = results.groupby(["feature", "term_cluster"]).size().rename("n_theme_terms")
    rep = results[results["representative"].astype(bool)].join(size, on=["feature", "term_cluster"])
    return rep.sort_values(["feature", "term_cluster"], kind="stable")

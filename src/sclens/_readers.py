"""Checked readers of the results the tools store in ``adata.uns`` (shared by ``tl``, ``get`` and ``pl``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _provenance as provenance
from ._utils import check_adata, check_sae_keys

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


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


def annotation_results(adata: AnnData, annotation_key: str, namespaces: Sequence[str] | None) -> pd.DataFrame:
    """``adata.uns[annotation_key]['results']`` restricted to ``namespaces``, after checks."""
    check_adata(adata)
    key = annotation_key
    if not isinstance(adata.uns.get(key), Mapping) or "results" not in adata.uns[key]:
        msg = (
            f"No feature annotation under `adata.uns[{key!r}]['results']`; run "
            f"`sl.tl.annotate_features(adata, gene_sets=..., key_added={key!r})` first."
        )
        raise KeyError(msg)
    provenance.check_derived(
        adata, adata.uns[key], what=f"The annotation `adata.uns[{key!r}]`",
        rerun=f"sl.tl.annotate_features(adata, gene_sets=..., key_added={key!r})",
    )  # fmt: skip
    res = adata.uns[key]["results"]
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


def sub_result(adata: AnnData, run_key: str, entry: str, *, made_by: str, run_param: str) -> Any:
    """``adata.uns[run_key][entry]``, written by ``made_by`` (e.g. ``sl.tl.feature_space``) with ``key_added=entry``.

    ``run_param`` names ``made_by``'s parameter that selects ``run_key`` (``sae_key``, ``annotation_key``).
    """
    check_adata(adata)
    run = adata.uns.get(run_key)
    if not isinstance(run, Mapping) or entry not in run:
        msg = (
            f"`adata.uns[{run_key!r}][{entry!r}]` not found; run "
            f"`{made_by}(adata, {run_param}={run_key!r}, key_added={entry!r})` first."
        )
        raise KeyError(msg)
    return run[entry]


def stored_space(adata: AnnData, annotation_key: str, space_key: str = "feature_space") -> dict:
    """``adata.uns[annotation_key][space_key]`` after checking it exists and matches the current SAE run."""
    run_key = annotation_key
    space = sub_result(adata, run_key, space_key, made_by="sl.tl.feature_space", run_param="annotation_key")
    provenance.check_derived(
        adata, adata.uns[run_key], what=f"The feature space `adata.uns[{run_key!r}][{space_key!r}]`",
        rerun=f"sl.tl.annotate_features(..., key_added={run_key!r})` then "
        f"`sl.tl.feature_space(adata, annotation_key={run_key!r}, key_added={space_key!r})",
        recorded=space.get("params") if isinstance(space, Mapping) else None,
    )  # fmt: skip
    return space


def stored_annotation(
    adata: AnnData, annotation_key: str, *, sae_key: str, need: Sequence[str] = ("results",), purpose: str = ""
) -> Mapping:
    """``adata.uns[annotation_key]`` after checks: it holds ``need`` and belongs to the current SAE run ``sae_key``.

    ``purpose`` is appended to the message when it is missing (e.g. ``": the null repeats that annotation"``).
    """
    ann = adata.uns.get(annotation_key)
    rerun = f"sl.tl.annotate_features(adata, gene_sets=..., key_added={annotation_key!r})"
    if not isinstance(ann, Mapping) or any(k not in ann for k in need):
        msg = f"`adata.uns[{annotation_key!r}]` not found; run `sl.tl.annotate_features(adata, gene_sets=...)` first"
        raise KeyError(msg + (purpose or "."))
    provenance.check_derived(adata, ann, sae_key=sae_key, what=f"`adata.uns[{annotation_key!r}]`", rerun=rerun)
    return ann

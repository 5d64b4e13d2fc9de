"""``sl.tl.annotation_null``: how many annotations the same pipeline finds when there is nothing to find."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._columns import write_columns
from ..._docs import doc_params
from ..._network import GeneSetsLike, as_network
from ..._provenance import run_id
from ..._readers import annotation, features_table, sae_run, store_result
from ..._utils import check_adata, resolve_seed, sae_activations, writable
from .._annotation._engines import FLAVORS, de_methods
from .._annotation._enrich import gene_set_matrix
from .._annotation._predicted import predictor
from ._directions import direction_activations, embedding_of

logger = logging.getLogger("sclens")
NULLS = ("cells", "genes")
ALL_NULLS = (*NULLS, "directions")
_NULL_NAMES = {"cells": "activations permuted", "genes": "gene labels permuted", "directions": "random directions"}
_PASSED = ("high_quantile", "low_quantile", "n_low", "min_high", "alpha", "de_alpha", "min_log2fc", "min_size",
           "max_size", "flavor", "random_state")  # fmt: skip
#: arguments added later, with the value that reproduces an annotation stored before them
_LATER = {"max_de_genes": None, "independent_filter": True, "go_algorithm": "classic", "dispersions": "moments"}


def _annotation_args(params: dict, model: Any, adata: AnnData) -> dict[str, Any]:
    """Return the keyword arguments of :func:`annotate_features` that produced an annotation run's ``params``.

    A model (or the layer of predictions) becomes a callable bound to ``adata``'s own cells, so the null's
    light copy of ``adata`` needs nothing the model reads (scvi-tools' registered layers and columns).
    """
    kw = {k: params.get(k) for k in _PASSED}
    kw.update({k: params.get(k, old) for k, old in _LATER.items()})
    kw["independent_filter"] = bool(kw["independent_filter"])
    kw["features"] = np.asarray(params["features"]).astype(int)
    kw["layer"] = params.get("layer")
    cells = params.get("cells")
    if isinstance(cells, Mapping):
        kw["cells"] = {k: list(np.atleast_1d(v)) for k, v in cells.items()} or None
    else:
        kw["cells"] = None if cells is None or np.size(cells) == 0 else np.asarray(cells, dtype=bool)
    flavor = FLAVORS[str(params.get("flavor", "sclens"))]  # a flavor's engine is stored, not a de_method choice
    kw["de_method"] = de_methods()[0] if flavor.de_method else params["de_method"]
    kw["enrichment"] = "ora" if flavor.enrichment else params["enrichment"]
    if str(params.get("expression", "")).startswith("model:"):
        model = params.get("model_layer", model)  # stored predictions are read again from their layer
        if model is None:
            msg = f"The annotation used {params['expression']!r}; pass the same model (or callable) as `model=`."
            raise ValueError(msg)
        kw["model"] = predictor(adata, model)[0]
    return kw


def _light(adata: AnnData, sae_key: str, kw: dict) -> AnnData:
    """Return an AnnData sharing ``adata``'s expression and the columns ``cells`` needs, without results."""
    cols = list(kw["cells"].keys()) if isinstance(kw.get("cells"), Mapping) else []
    light = AnnData(obs=adata.obs[cols].copy(), var=pd.DataFrame(index=adata.var_names.copy()))
    if kw["layer"] is None:
        light.X = adata.X
    elif kw["layer"] not in adata.layers:
        msg = (
            f"`adata.layers[{kw['layer']!r}]`, the expression the annotation (`annotation_key`) was run on, is "
            f"missing; available layers: {list(adata.layers) or 'none'}. Restore it, or annotate again."
        )
        raise KeyError(msg)
    else:
        light.layers[kw["layer"]] = adata.layers[kw["layer"]]
    light.uns["null"] = {}
    return light


def _check_same_gene_sets(gene_sets: Any, adata: AnnData, params: Mapping, annotation_key: str) -> None:
    """Refuse ``gene_sets`` other than those the annotation tested (by the fingerprint in its params)."""
    recorded = params.get("gene_sets")
    if not isinstance(recorded, Mapping) or "fingerprint" not in recorded:
        return  # an annotation from before fingerprints: nothing to compare with
    namespaces = ["BP"] if params.get("flavor") == "scfeaturelens" else None
    given = gene_set_matrix(gene_sets, adata.var_names, namespaces=namespaces)
    if given.fingerprint != str(recorded["fingerprint"]):
        msg = (
            f"gene_sets are not those of the annotation `adata.uns[{annotation_key!r}]`: {len(given.terms)} sets "
            f"({len(given.net)} set-gene pairs on measured genes) vs {recorded.get('n_sets')} sets "
            f"({recorded.get('n_pairs')} pairs) annotated; a null on other sets compares nothing. Pass the same "
            "`gene_sets` as to `sl.tl.annotate_features`."
        )
        raise ValueError(msg)


def _measured_network(gene_sets: Any, var_names: pd.Index) -> tuple[pd.DataFrame, pd.Index, np.ndarray]:
    """Return the gene-set rows on measured genes, the genes and each row's gene position (built once per run)."""
    net = as_network(gene_sets)
    genes = pd.Index(var_names.astype(str))
    pos = genes.get_indexer(net["target"])
    return net[pos >= 0].copy(), genes, pos[pos >= 0]


def _permuted_network(measured: tuple[pd.DataFrame, pd.Index, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    """Gene sets with the measured genes relabelled by one random permutation (set sizes kept)."""
    net, genes, pos = measured
    perm = rng.permutation(genes.size)
    net = net.copy()
    net["target"] = genes[perm[pos]].to_numpy()
    return net


def _per_feature(results: pd.DataFrame, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kept terms and best (smallest) p-value per feature (``padj`` for decoupler methods; 1 without terms)."""
    col = "pvalue" if results["pvalue"].notna().any() or results.empty else "padj"
    grouped = results.groupby("feature")
    counts = grouped.size().reindex(feats).fillna(0).to_numpy(dtype=np.float64)
    best = grouped[col].min().reindex(feats).fillna(1.0).to_numpy(dtype=np.float64)
    return counts, best


def empirical_fdr(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Permutation FDR of calling each feature at its best p-value (a q-value: monotone in the p-value).

    ``observed``: best p per feature; ``null``: permutations x features best p under a null. At the
    cut ``p``: expected null features at or below it (mean over permutations) over observed features
    at or below it.
    """
    obs_sorted = np.sort(observed)
    null_sorted = np.sort(null.ravel())
    n_called = np.searchsorted(obs_sorted, observed, side="right")
    n_null = np.searchsorted(null_sorted, observed, side="right") / null.shape[0]
    fdr = np.minimum(1.0, n_null / np.maximum(n_called, 1))
    order = np.argsort(-observed, kind="stable")
    fdr[order] = np.minimum.accumulate(fdr[order])
    return fdr


def _check_nulls(nulls: Any, n_permutations: int) -> list[str]:
    """Return the requested nulls as a list without repeats; refuse unknown ones and no permutations."""
    nulls = [nulls] if isinstance(nulls, str) else list(dict.fromkeys(nulls))
    bad = [n for n in nulls if n not in ALL_NULLS]
    if bad or not nulls:
        msg = f"nulls must be a non-empty list of {ALL_NULLS}, got {nulls!r}."
        raise ValueError(msg)
    if int(n_permutations) < 1:
        msg = f"n_permutations must be >= 1, got {n_permutations!r}."
        raise ValueError(msg)
    return nulls


@doc_params()
def annotation_null(
    adata: AnnData,
    *,
    gene_sets: GeneSetsLike,
    sae_key: str = "sae",
    annotation_key: str = "sae_go",
    nulls: Sequence[Literal["cells", "genes", "directions"]] = NULLS,
    n_permutations: int = 3,
    model: Any = None,
    random_state: int | None = 0,
    key_added: str = "annotation_null",
    copy: bool = False,
) -> AnnData | None:
    """Null controls for :func:`annotate_features`: the annotation rate when there is nothing to find.

    The annotation stored in ``adata.uns[annotation_key]`` is re-run with exactly its arguments
    (same features, engine, cell-set rule and thresholds) on data where no feature can have a true
    annotation:

    * ``"cells"``: the activations are permuted across cells (one permutation of the cells per
      repetition, applied to every feature), so high and low cells no longer differ in expression;
    * ``"genes"``: the measured genes of the gene sets are relabelled by a random permutation of
      ``adata.var_names``, so every set keeps its size but holds random genes;
    * ``"directions"``: every feature is replaced by a random unit direction of the embedding the
      SAE was trained on (``params['use_rep']``), thresholded to fire in as many cells as the
      feature (the projection minus its ``1 - frequency`` quantile). Unlike the other two this null
      keeps the biology of the embedding: a random direction is a mixture of real programs, so its
      high cells do differ in expression. It answers "is this feature annotated more readily than
      any direction of the same sparsity?"; on data with strong structure it annotates many features.

    Per feature, the expected number of kept terms under each null (mean over permutations) is
    reported, and an empirical false discovery rate of calling the feature annotated at its best
    term's p-value ``p``: the mean number of features whose best null p-value is ``<= p`` over the
    number of observed features whose best p-value is ``<= p`` (made monotone like a q-value; the
    larger of the nulls; NaN for features without terms). The summary line "annotated features:
    observed N vs null M" compares the number of features with at least one term. On data whose
    activations are independent of expression, the "cells" null should annotate about ``alpha``
    of the features or fewer; a feature whose FDR is high has an annotation that a random feature
    gets as easily.

    Each permutation is one full annotation run: with the fast engine that is seconds for a few
    hundred features; the time taken is stored (``seconds``).

    Parameters
    ----------
    {adata}
    gene_sets
        The gene sets of the annotation run.
    {sae_key}
    {annotation_key}
    nulls
        Which nulls to run: ``"cells"`` (activations permuted), ``"genes"`` (gene labels permuted),
        ``"directions"`` (random directions of the embedding at each feature's frequency).
    n_permutations
        Permutations per null.
    model
        The model (scvi-tools model or callable) when the annotation used a model's predicted
        expression; predictions stored in a layer are read from it again without it.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['table']``: one row per annotated feature: ``feature``,
      ``observed_terms``, ``null_{{null}}_terms`` (mean kept terms under each null),
      ``null_{{null}}_annotated`` (fraction of permutations with at least one term), ``{{null}}_fdr``
      (the empirical FDR against that null) and ``annotation_fdr`` (the largest of them);
    * ``adata.uns[sae_key]['features']`` columns ``null_terms`` (the larger null mean) and
      ``annotation_fdr``;
    * ``adata.uns[sae_key][key_added]['params']``: ``n_annotated`` (observed), ``null_{{null}}_annotated``
      (mean number of features annotated under each null), ``summary``, ``seconds``, the arguments,
      ``sae_key``, ``sae_run_id`` and ``annotation_run_id``.
    """
    from .._annotation._annotate import annotate_features

    check_adata(adata)
    nulls = _check_nulls(nulls, n_permutations)
    sae_run(adata, sae_key, need=(), activations=True)
    ann = annotation(adata, annotation_key, sae_key=sae_key)
    kw = _annotation_args(ann["params"], model, adata)
    _check_same_gene_sets(gene_sets, adata, ann["params"], annotation_key)
    feats = kw["features"]
    acts = sae_activations(adata, sae_key)
    rng = np.random.default_rng(resolve_seed(random_state))
    light = _light(adata, sae_key, kw)
    measured = _measured_network(gene_sets, adata.var_names) if "genes" in nulls else None
    observed, observed_p = _per_feature(ann["results"], feats)
    if "directions" in nulls:
        emb = embedding_of(adata, sae_key)
        freq = np.diff(acts.tocsc().indptr)[feats] / adata.n_obs

    t0, level = time.perf_counter(), logger.level
    logger.setLevel(max(level, logging.ERROR))  # the observed run already warned about skipped features
    null_terms = {n: np.zeros((int(n_permutations), feats.size)) for n in nulls}
    null_p = {n: np.ones((int(n_permutations), feats.size)) for n in nulls}
    try:
        for r in range(int(n_permutations)):
            for n in nulls:
                if n == "directions":
                    light.obsm["X_null"] = direction_activations(emb, freq, feats, acts.shape[1], rng)
                else:
                    light.obsm["X_null"] = acts[rng.permutation(adata.n_obs)] if n == "cells" else acts
                sets = _permuted_network(measured, rng) if n == "genes" else gene_sets
                annotate_features(light, gene_sets=sets, sae_key="null", key_added="null_go", **kw)
                null_terms[n][r], null_p[n][r] = _per_feature(annotation(light, "null_go")["results"], feats)
    finally:
        logger.setLevel(level)
    seconds = time.perf_counter() - t0

    table = pd.DataFrame({"feature": feats.astype(np.int64), "observed_terms": observed.astype(np.int64)})
    for n in nulls:
        table[f"null_{n}_terms"] = null_terms[n].mean(axis=0)
        table[f"null_{n}_annotated"] = (null_terms[n] > 0).mean(axis=0)
    worst = np.max([null_terms[n].mean(axis=0) for n in nulls], axis=0)
    for n in nulls:
        table[f"{n}_fdr"] = np.where(observed > 0, empirical_fdr(observed_p, null_p[n]), np.nan)
    table["annotation_fdr"] = table[[f"{n}_fdr" for n in nulls]].max(axis=1, skipna=False)
    counts = {f"null_{n}_annotated": float((null_terms[n] > 0).sum(axis=1).mean()) for n in nulls}
    n_obs = int((observed > 0).sum())
    summary = (
        f"annotated features: observed {n_obs} vs null "
        + ", ".join(f"{counts[f'null_{n}_annotated']:.1f} ({_NULL_NAMES[n]})" for n in nulls)
        + f" of {feats.size} features ({int(n_permutations)} permutation(s), {seconds:.1f} s)"
    )
    logger.info("annotation_null: %s", summary)

    adata = writable(adata, copy=copy)
    frame = pd.DataFrame({"null_terms": worst, "annotation_fdr": table["annotation_fdr"].to_numpy()},
                         index=[str(f) for f in feats])  # fmt: skip
    if features_table(adata, sae_key) is not None:
        write_columns(adata, sae_key, frame, writer="sl.tl.annotation_null")
    store_result(
        adata, "annotation_null", key=key_added, parent=sae_key, tables={"table": table},
        params={"annotation_key": annotation_key, "annotation_run_id": run_id(adata, annotation_key), "nulls": nulls,
                "n_permutations": int(n_permutations), "random_state": resolve_seed(random_state),
                "n_features": int(feats.size), "n_annotated": n_obs, **counts, "summary": summary,
                "seconds": float(seconds)},
    )  # fmt: skip
    return adata if copy else None

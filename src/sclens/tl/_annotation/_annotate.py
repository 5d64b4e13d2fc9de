"""``sl.tl.annotate_features`` (every SAE feature to gene-set terms) and ``sl.tl.contrast``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._docs import doc_params
from ..._network import GeneSetsLike
from ..._readers import store_result
from ..._utils import all_or_nothing, check_adata, check_key_added, group_labels, resolve_seed, writable
from ._annotate_core import check_options, feature_summary, run_contrasts, update_feature_table
from ._cellsets import MIN_CELLS, annotated_features, cell_sets, check_cell_set_args, resolve_within, skip_message
from ._de import Expression
from ._elim import ontology_of, term_graph
from ._engines import FLAVORS
from ._enrich import GeneSets, check_testable, gene_set_matrix
from ._redundancy import add_term_clusters
from ._types import Options

logger = logging.getLogger("sclens")

_doc_shared = """\
gene_sets
    Gene sets: a DataFrame with ``source``/``target`` (and optionally ``name``, ``namespace``)
    columns such as :func:`sclens.datasets.go_gene_sets` returns, a dict of gene lists, or a GMT
    path. Its ``attrs`` (e.g. ``source``, ``release``) are recorded in the params.
de_method
    ``"fast"``: all contrasts in one batched negative-binomial Wald test fitting pyDESeq2's model
    (``poscounts`` size factors; each contrast's own dispersions, from within-group moments of its
    high and low cells shrunk towards a per-contrast trend as DESeq2's MAP; pyDESeq2's group means
    with their 0.5 floor and Wald test; no outlier replacement; the docs' Differential expression
    page compares it with pyDESeq2); ``"deseq2"``: one pyDESeq2 run per
    contrast with DESeq2's single-cell settings (``~condition``, ``poscounts`` size factors, no
    Cook's outlier replacement), the reference.
enrichment
    ``"ora"``: one-sided hypergeometric test of the up-regulated genes (``padj < de_alpha`` and
    ``log2fc > min_log2fc``) in each gene set, background = the genes tested in that contrast, BH
    within each contrast, terms kept at ``padj < alpha``. Any other name runs
    ``decoupler.mt.<name>`` (e.g. ``"ulm"``) once on the contrasts x genes matrix of Wald statistics;
    terms are kept at decoupler's adjusted p-value ``< alpha`` with a positive score (``pvalue`` is
    then NaN: decoupler only returns adjusted p-values).
alpha
    Threshold for keeping a term: on the BH-adjusted p-value within each feature (``padj < alpha``);
    with ``flavor="scfeaturelens"`` on the raw Mann-Whitney p-value, as the paper. ``None``: 0.05
    (adjusted), 0.01 (``flavor="scfeaturelens"``, raw).
de_alpha
    Adjusted p-value threshold for a gene to count as up-regulated (ORA).
min_log2fc
    Minimum log2 fold change for a gene to count as up-regulated (ORA).
max_de_genes
    At most this many up-regulated genes, those of largest log2 fold change, form a contrast's
    study set (ORA; the decoupler methods' study flag); ``None``: all of them. A contrast of a few
    cells against hundreds calls thousands of genes on real data, and ORA over such a set ranks
    the largest gene sets (translation, respiration) first; the cap keeps the most specific genes
    (on 559 real immune cells it moves the macrophage lipid vocabulary from 48th to 5th place
    in the macrophage-vs-rest contrast, ``benchmarks/biology.py``).
independent_filter
    ``True``: pyDESeq2's independent filtering of the adjusted p-values (BH only above a base-mean
    cutoff that maximises discoveries); ``False`` (default): BH over all tested genes. The base
    mean of a contrast of a few high cells against hundreds of low cells is small for exactly the
    genes specific to the high cells (CD79A, GNLY), so filtering drops the markers of small
    populations; both keep the false discovery rate (``benchmarks/null_calibration.py``).
go_algorithm
    ``"elim"``: topGO's elim decorrelation of the ORA along the GO graph (Alexa, Rahnenführer &
    Lengauer 2006): terms are tested bottom-up, and the genes of a term with raw p < 0.01 are
    removed from all its ancestors before those are tested, so a parent significant only through
    a specific child's genes is not kept and the specific terms come first (``n_overlap_elim`` and
    ``set_size_elim`` are the counts left after removal, ``pvalue``, ``padj`` and ``odds_ratio``
    come from them). The graph is the one the gene sets were built from (:func:`sclens.datasets.go_ontology`,
    the downloaded release for ``source="download"`` gene sets); terms not in it are tested as
    ``"classic"``. ``"classic"``: every term tested on all its genes. ORA only (decoupler methods
    and ``flavor="scfeaturelens"`` ignore it).
dispersions
    The fast engine's per-contrast NB dispersions (``de_method="fast"`` only). ``"moments"``
    (default): pooled within-group moments of ``y / s`` on the contrast's own high and low cells,
    shrunk towards their trend with DESeq2's MAP weight. ``"floored"``: pyDESeq2's steps (Cox-Reid
    maximum likelihood from a per-contrast count histogram built in the same pass, trend, MAP,
    DESeq2's single-cell ``minmu``), never below the moment estimate: closer to pyDESeq2's calls
    (:doc:`/differential_expression`), slower, and on real immune cells fewer features show their
    type's markers and GO vocabulary (``benchmarks/biology.py``), hence not the default.
min_size, max_size
    Terms with fewer (more) genes among the tested genes are not tested; ``None``: no upper limit."""


DEMethod = Literal["fast", "deseq2"]
Enrichment = Literal["ora", "ulm", "mlm", "gsea", "aucell"] | str
GOAlgorithm = Literal["classic", "elim"]
Dispersions = Literal["moments", "floored"]


@doc_params(shared=_doc_shared)
def annotate_features(
    adata: AnnData,
    *,
    gene_sets: GeneSetsLike,
    sae_key: str = "sae",
    features: int | Sequence[int] | None = None,
    layer: str | None = None,
    model: Any = None,
    high_quantile: float = 0.99,
    low_quantile: float | None = None,
    n_low: int = 1000,
    min_high: int = 50,
    cells: Mapping[str, Any] | np.ndarray | None = None,
    de_method: DEMethod = "fast",
    enrichment: Enrichment = "ora",
    alpha: float | None = None,
    de_alpha: float = 0.05,
    min_log2fc: float = 1.0,
    max_de_genes: int | None = 200,
    independent_filter: bool = False,
    go_algorithm: GOAlgorithm = "classic",
    dispersions: Dispersions = "moments",
    min_size: int = 5,
    max_size: int | None = None,
    flavor: Literal["sclens", "scfeaturelens"] = "sclens",
    return_de: int | Sequence[int] | None = None,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    key_added: str = "sae_go",
    copy: bool = False,
) -> AnnData | None:
    """Annotate every SAE feature with the gene-set (GO) terms its most active cells up-regulate.

    For each feature, its *high* cells are compared with its *low* cells (paper, sec. 5.3):

    * **high** = the top ``max(min_high, (1 - high_quantile) * n)`` of the ``n`` (selected) cells
      by activation: the cells at or above the ``high_quantile`` quantile of the feature's
      activations, zeros included, extended to the ``min_high`` most active cells when that is
      fewer (so small datasets are annotated too); only active cells count, so a feature active in
      fewer cells has all of them as its high set.
    * **low** = a seeded random sample of at most ``n_low`` cells where the feature is zero (all of
      them when there are fewer).
    * ``low_quantile`` set (the paper's manual variant, e.g. ``high_quantile=0.95, low_quantile=0.05``):
      both quantiles are taken over the *non-zero* activations, high = at or above the upper one (at
      least the ``min_high`` most active cells), low = at most ``n_low`` other active cells at or
      below the lower one.
    * ``cells={{"cell_type": "B cells"}}`` restricts both sets (and the quantiles) to those cells.
    * A feature is skipped only when it cannot be tested: its high or its low set has fewer than 2
      cells (never active, active in one cell, or active in all cells but one). The reason is
      recorded per feature in ``uns[key_added]['skipped']`` and the features table; when no feature
      can be tested, the call raises.

    Expression is the observed counts of ``layer`` (integer, non-negative, finite) or, with
    ``model``, a model's predicted expression, read in chunks of cells and tested by the same
    engine (rounded for ``de_method="deseq2"``): an scvi-tools model's
    ``get_normalized_expression(library_size="latent")`` (the mean at each cell's own library
    size), a callable ``model(cells)`` returning the predicted expression (cells x genes, same
    genes as ``adata``) of the cells at the integer positions ``cells`` (sorted, unique; any
    model, e.g. multiDGD), or the name of a layer of ``adata`` holding predictions computed
    beforehand.

    ``flavor="scfeaturelens"`` reproduces the published tool's method: high = cells strictly above
    the quantile, low as above; Welch t-test per gene on library-size-normalised expression, BH over
    genes, fold change = ratio of means; study set = genes at ``padj < 1e-5`` with fold change > 2 or
    < 0.5 (``p < 0.05`` when none passes, no fold-change filter when no gene reaches 2); for each
    term in namespace ``BP`` (all terms if the gene sets have no namespaces) with 10-500 measured
    genes, a binomial test of the hits against ``p = term size / measured genes`` and a Mann-Whitney
    test of the term's genes against the other measured genes on fold-change ranks; terms kept at
    ``hits >= 1`` and Mann-Whitney ``p <= alpha``, no correction across terms (``pvalue`` is the
    Mann-Whitney p, ``binom_pvalue`` is stored alongside, ``padj`` is informative only).
    ``de_method``, ``enrichment``, ``de_alpha``, ``min_log2fc``, ``max_de_genes``,
    ``independent_filter``, ``min_size`` and ``max_size`` are then ignored. Where it deliberately
    differs from the published code: the low set is a seeded random sample of zero cells, not the first
    1000 cells in index order (which depends on how the file is sorted); the Mann-Whitney test is
    one-sided (up-regulated terms) and not a halved two-sided p that ignores direction; the binomial
    test is one-sided (over-representation), not two-sided. Use direct (unpropagated) GO annotations to
    match the published term sizes.

    The default ``flavor="sclens"`` uses a count model (NB Wald or DESeq2), a one-sided test with
    correction across terms, and tests all terms of the given gene sets.

    Parameters
    ----------
    {adata}
    {shared}
    {sae_key}
    features
        Feature numbers to annotate; ``None``: every feature whose ``kind`` is not ``"dead"``.
    {layer}
    model
        Predicted expression tested instead of observed counts: a trained scvi-tools model (set up
        on ``adata``), a callable ``model(cells) -> cells x genes`` or the name of a layer of
        predictions (see above).
    high_quantile
        Quantile of the activations defining the high set.
    low_quantile
        ``None``: low = zero cells; a float: low = non-zero cells at or below this quantile.
    n_low
        Maximum size of the low set.
    min_high
        Smallest high set: with few cells the ``min_high`` most active cells are taken (all active
        cells when fewer are active). It decides the high set below ``min_high / (1 - high_quantile)``
        cells (5,000 at the defaults); on 559 real immune cells 50 rather than 10 cells lets 3 of 7
        NK features (was 0) carry NK vocabulary and 30 of 33 macrophage features their markers
        (``benchmarks/biology.py``), with the planted null at 0 of 240.
    cells
        Cells both sets are drawn from: ``{{obs column: value or list of values}}`` or a boolean
        mask over cells; ``None``: all cells.
    flavor
        ``"sclens"`` (ours) or ``"scfeaturelens"`` (the published tool's method, see above).
    return_de
        Feature numbers whose full per-gene DE table is stored in ``uns[key_added]['de']``.
    {random_state}
    n_jobs
        Worker processes for ``de_method="deseq2"`` (one contrast per worker); the fast engine is one
        vectorised computation and does not use it. ``None`` uses ``sclens.settings.n_jobs``.
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with

    * ``adata.uns[key_added]['results']``: one row per (feature, term) kept, columns ``feature``,
      ``term``, ``name``, ``namespace``, ``n_overlap``, ``set_size``, ``n_de``, ``odds_ratio``
      (``score`` for decoupler methods), ``pvalue``, ``padj`` (and ``binom_pvalue`` for
      ``flavor="scfeaturelens"``; ``mean_log2fc`` of the term's tested genes for ORA, used to
      break ties of saturated p-values), sorted by feature and p-value;
    * ``adata.uns[key_added]['skipped']``: ``feature``, ``reason``, ``n_high``, ``n_low``;
    * ``adata.uns[key_added]['params']``: the arguments, gene-set attributes and sizes, ``sae_key``
      and ``sae_run_id``;
    * ``adata.uns[key_added]['run_id']``: a unique id of this annotation, recorded as
      ``annotation_run_id`` by the results derived from it (:func:`feature_space`, :func:`annotation_null`);
    * ``adata.uns[key_added]['top_genes']``: each annotated feature's up to 20 most up-regulated genes
      (``log2fc > 0``, ``padj < de_alpha``), by Wald (Welch for ``flavor="scfeaturelens"``)
      statistic: ``feature``, ``gene``, ``log2fc``, ``padj``;
    * ``adata.uns[key_added]['de']``: per-gene DE tables of the ``return_de`` features;
    * ``adata.uns[sae_key]['features']``: columns ``n_terms``, ``best_term``, ``best_padj`` (its
      adjusted p-value), ``n_high`` and ``n_low`` (sizes of the cell sets), ``skip_reason`` (why
      the feature could not be tested, ``""`` when it was), and from :func:`term_redundancy`
      ``n_term_clusters``, ``representative_term``, ``top_genes`` and ``label``
      ("representative term | top genes | top group", the group only for local features);
      ``results`` gains ``ic``, ``term_cluster`` and ``representative``.
    """
    check_adata(adata)
    opt = check_options(
        de_method=de_method, enrichment=enrichment, flavor=flavor, alpha=alpha, de_alpha=de_alpha,
        min_log2fc=min_log2fc, max_de_genes=max_de_genes, independent_filter=independent_filter,
        go_algorithm=go_algorithm, dispersions=dispersions, min_size=min_size, max_size=max_size, n_jobs=n_jobs,
    )  # fmt: skip
    check_cell_set_args(high_quantile=high_quantile, low_quantile=low_quantile, n_low=n_low, min_high=min_high)
    seed = resolve_seed(random_state)
    check_key_added(key_added, reserved={sae_key: "the SAE run it annotates"})
    if adata.n_obs < 2 * MIN_CELLS:
        msg = (
            f"adata has {adata.n_obs} cell(s); annotate_features compares at least {MIN_CELLS} high with "
            f"{MIN_CELLS} low cells per feature, so it needs at least {2 * MIN_CELLS} (in practice hundreds)."
        )
        raise ValueError(msg)
    acts, feats = annotated_features(adata, key=sae_key, features=features)
    mask = resolve_within(adata, cells)
    expr = Expression(adata, layer=layer, model=model)
    fl = FLAVORS[flavor]
    gs = gene_set_matrix(gene_sets, adata.var_names, namespaces=fl.namespaces)
    if fl.check_sizes:
        check_testable(gs, min_size=opt.min_size, max_size=opt.max_size)
    _add_term_graph(gs, gene_sets, opt, fl.enrichment or opt.enrichment)
    keep_de = _check_return_de(return_de, feats)
    sets = cell_sets(
        acts, feats, high_quantile=high_quantile, low_quantile=low_quantile, n_low=int(n_low),
        min_high=int(min_high), mask=mask, seed=seed, strict=fl.strict,
    )  # fmt: skip
    n_features = acts.shape[1]
    del acts  # a copy of the activations (cells x features), not needed past the cell sets
    if len(sets.skipped):
        text = skip_message(sets.skipped, len(feats), cells=cells, low_quantile=low_quantile)
        if sets.features.size == 0:
            msg = f"annotate_features: {text}"
            raise ValueError(msg)
        logger.warning("annotate_features: %s (reasons per feature in uns[%r]['skipped'])", text, key_added)
    top: list[pd.DataFrame] = []
    results, de_tables = run_contrasts(expr, sets.high, sets.low, sets.features, gs, opt, keep_de=keep_de, top=top)
    top_table = (
        pd.concat(top, ignore_index=True) if top else pd.DataFrame(columns=["feature", "gene", "log2fc", "padj"])
    )
    top_table.index = top_table.index.astype(str)

    summary = feature_summary(results, feats, sets)
    params = {
        "sae_key": sae_key, "features": feats, "layer": layer, "expression": expr.source,
        "model_layer": model if isinstance(model, str) else None,
        "high_quantile": high_quantile, "low_quantile": low_quantile, "n_low": int(n_low),
        "min_high": int(min_high), "cells": _cells_param(cells),
        "de_method": fl.de_method or de_method, "enrichment": fl.enrichment or enrichment,
        "alpha": opt.alpha, "de_alpha": de_alpha, "min_log2fc": min_log2fc, "max_de_genes": opt.max_de_genes,
        "independent_filter": opt.independent_filter, "go_algorithm": opt.go_algorithm, "dispersions": opt.dispersions,
        "min_size": int(min_size), "max_size": max_size, "flavor": flavor, "random_state": seed,
        "gene_sets": gs.describe(),
    }  # fmt: skip
    tables = {
        "results": results,
        "skipped": sets.skipped,
        "top_genes": top_table,
        **({"de": de_tables} if de_tables else {}),
    }
    adata = writable(adata, copy=copy)
    with all_or_nothing(adata):  # an error or Ctrl-C while storing leaves adata as it was
        update_feature_table(adata, sae_key, summary, n_features=n_features)
        store_result(adata, "annotation", key=key_added, parent=None, tables=tables, params=params)
        add_term_clusters(adata, sae_key=sae_key, annotation_key=key_added, gs=gs)
    return adata if copy else None


def _add_term_graph(gs: GeneSets, gene_sets: GeneSetsLike, opt: Options, enrichment: str) -> None:
    """Give ``gs`` its GO graph when the ORA runs with ``go_algorithm="elim"``."""
    if opt.go_algorithm == "elim" and enrichment == "ora":
        gs.graph = term_graph(gs, ontology_of(gene_sets))


def _check_return_de(return_de: Any, feats: np.ndarray) -> set[int]:
    if return_de is None:
        return set()
    values = np.atleast_1d(np.asarray(return_de, dtype=object))
    if not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) for f in values):
        msg = f"return_de must be feature numbers (integers), got {return_de!r}."
        raise TypeError(msg)
    wanted = {int(f) for f in values}
    unknown = sorted(wanted - {int(f) for f in feats})
    if unknown:
        msg = (
            f"return_de: feature(s) {unknown[:10]} are not among the features annotated in this call; "
            "add them to `features=` or remove them from `return_de`."
        )
        raise ValueError(msg)
    return wanted


def _cells_param(cells: Any) -> Any:
    if cells is None or isinstance(cells, Mapping):
        return {k: np.asarray(v).astype(str) for k, v in (cells or {}).items()}
    return np.asarray(cells, dtype=bool)


@doc_params(shared=_doc_shared)
def contrast(
    adata: AnnData,
    *,
    groupby: str,
    groups: str | Sequence[str],
    reference: str | Sequence[str] = "rest",
    gene_sets: GeneSetsLike,
    layer: str | None = None,
    model: Any = None,
    de_method: DEMethod = "fast",
    enrichment: Enrichment = "ora",
    alpha: float | None = None,
    de_alpha: float = 0.05,
    min_log2fc: float = 1.0,
    max_de_genes: int | None = 200,
    independent_filter: bool = False,
    go_algorithm: GOAlgorithm = "classic",
    dispersions: Dispersions = "moments",
    min_size: int = 5,
    max_size: int | None = None,
    n_jobs: int | None = None,
    key_added: str = "contrast",
    copy: bool = False,
) -> AnnData | None:
    """Differential expression and enrichment of one cell group against another.

    The same engines as :func:`annotate_features`, for any two groups of cells, e.g. steered vs
    normal cells (``groupby="perturbed", groups="True", reference="False"``).

    Parameters
    ----------
    {adata}
    groupby
        Column of ``adata.obs`` with the groups.
    groups
        Category (or list of categories) of ``groupby`` tested, pooled.
    reference
        Group (or list of groups) it is compared with; ``"rest"``: all other cells.
    {shared}
    {layer}
    model
        Predicted expression tested instead of counts: an scvi-tools model, a callable
        ``model(cells) -> cells x genes`` or the name of a layer of predictions (as in
        :func:`annotate_features`).
    {n_jobs}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with ``adata.uns[key_added]`` holding
    ``results`` (the kept terms; columns as in :func:`annotate_features` without ``feature``),
    ``de`` (per-gene ``log2fc``, ``stat``, ``pvalue``, ``padj``, ``base_mean``) and ``params``.
    """
    check_adata(adata)
    opt = check_options(
        de_method=de_method, enrichment=enrichment, flavor="sclens", alpha=alpha, de_alpha=de_alpha,
        min_log2fc=min_log2fc, max_de_genes=max_de_genes, independent_filter=independent_filter,
        go_algorithm=go_algorithm, dispersions=dispersions, min_size=min_size, max_size=max_size, n_jobs=n_jobs,
    )  # fmt: skip
    check_key_added(key_added)
    cat, n_missing = group_labels(adata, groupby)
    labels = cat.astype(str).to_numpy()
    labels[cat.isna().to_numpy()] = ""  # missing labels: in no group, not in "rest"
    hi = _group_mask(labels, groups, groupby)
    if isinstance(reference, str) and reference == "rest":
        lo = ~hi & (labels != "")
    else:
        lo = _group_mask(labels, reference, groupby)
    if n_missing:
        logger.warning("contrast: %d cell(s) with a missing `%s` label are left out.", n_missing, groupby)
    if (hi & lo).any():
        msg = "groups and reference overlap; choose disjoint groups."
        raise ValueError(msg)
    for name, m in (("groups", hi), ("reference", lo)):
        if m.sum() < 2:
            msg = f"The {name} has {int(m.sum())} cell(s); at least 2 are needed."
            raise ValueError(msg)
    expr = Expression(adata, layer=layer, model=model)
    gs = gene_set_matrix(gene_sets, adata.var_names)
    check_testable(gs, min_size=opt.min_size, max_size=opt.max_size)
    _add_term_graph(gs, gene_sets, opt, opt.enrichment)
    high = sparse.csc_matrix(hi[:, None].astype(np.float32))
    low = sparse.csc_matrix(lo[:, None].astype(np.float32))
    results, de = run_contrasts(expr, high, low, np.array([0]), gs, opt, keep_de={0})
    adata = writable(adata, copy=copy)
    params = {
        "groupby": groupby, "groups": np.atleast_1d(groups).astype(str),
        "reference": np.atleast_1d(reference).astype(str),
        "layer": layer, "expression": expr.source, "de_method": de_method, "enrichment": enrichment,
        "alpha": opt.alpha, "de_alpha": de_alpha, "min_log2fc": min_log2fc, "max_de_genes": opt.max_de_genes,
        "independent_filter": opt.independent_filter, "go_algorithm": opt.go_algorithm, "dispersions": opt.dispersions,
        "min_size": int(min_size), "max_size": max_size, "n_group": int(hi.sum()), "n_reference": int(lo.sum()),
        "gene_sets": gs.describe(),
    }  # fmt: skip
    tables = {"results": results.drop(columns="feature"), "de": de["0"]}
    store_result(adata, "contrast", key=key_added, parent=None, tables=tables, params=params)
    return adata if copy else None


def _group_mask(labels: np.ndarray, group: Any, groupby: str) -> np.ndarray:
    groups = [str(g) for g in np.atleast_1d(group)]
    present = set(labels) - {""}
    missing = [g for g in groups if g not in present]
    if missing:
        msg = (
            f"{missing} not found in `adata.obs[{groupby!r}]`; available: {sorted(present)[:20]} "
            "(cells with a missing label belong to no group)."
        )
        raise ValueError(msg)
    return np.isin(labels, groups)

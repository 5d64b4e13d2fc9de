"""Match gene-set genes to ``adata.var_names``: exact by default, optionally case-insensitive or via aliases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._network import GeneSetsLike, as_network
from .._utils import check_adata


def _alias_map(aliases: Any) -> dict[str, set[str]]:
    if aliases is None:
        return {}
    if isinstance(aliases, str):
        from ..datasets import gene_aliases

        aliases = gene_aliases(organism=aliases)
    if isinstance(aliases, pd.DataFrame):
        if not {"alias", "symbol"} <= set(aliases.columns):
            msg = f"aliases DataFrame needs columns 'alias' and 'symbol', it has {list(aliases.columns)}."
            raise KeyError(msg)
        pairs = zip(aliases["alias"].astype(str), aliases["symbol"].astype(str), strict=True)
    elif isinstance(aliases, Mapping):
        pairs = ((str(a), str(s)) for a, s in aliases.items())
    else:
        msg = f"aliases must be None, an organism name, a DataFrame or a dict; got {type(aliases).__name__}."
        raise TypeError(msg)
    out: dict[str, set[str]] = {}
    for alias, symbol in pairs:
        out.setdefault(alias, set()).add(symbol)
    return out


def match_genes(
    var_names: Sequence[str], targets: Sequence[str], *, case_sensitive: bool = True, aliases: Any = None
) -> tuple[dict[str, str], dict[str, int]]:
    """Map gene-set genes to variable names: ``({target: var_name}, counts by match kind)``.

    Exact matches come first; then, for unmatched variables, a unique case-insensitive match
    (``case_sensitive=False``), then a unique alias whose official symbol is in the gene sets
    and not matched yet. Each gene and each variable is used at most once.
    """
    targets = list(dict.fromkeys(map(str, targets)))
    target_set = set(targets)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    counts = {"exact": 0, "case": 0, "alias": 0}
    for v in map(str, var_names):
        if v in target_set and v not in mapping:
            mapping[v], counts["exact"] = v, counts["exact"] + 1
            used.add(v)
    rest = [v for v in dict.fromkeys(map(str, var_names)) if v not in used]
    if not case_sensitive:
        upper: dict[str, list[str]] = {}
        for t in targets:
            upper.setdefault(t.upper(), []).append(t)
        for v in rest:
            hits = [t for t in upper.get(v.upper(), []) if t not in mapping]
            if len(hits) == 1:
                mapping[hits[0]], counts["case"] = v, counts["case"] + 1
                used.add(v)
        rest = [v for v in rest if v not in used]
    alias_map = _alias_map(aliases)
    for v in rest:
        hits = [s for s in alias_map.get(v, ()) if s in target_set and s not in mapping]
        if len(hits) == 1:
            mapping[hits[0]], counts["alias"] = v, counts["alias"] + 1
    return mapping, counts


@doc_params()
def gene_coverage(
    adata: AnnData,
    *,
    gene_sets: GeneSetsLike,
    case_sensitive: bool = True,
    aliases: Literal["human", "mouse"] | pd.DataFrame | Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Report how well gene sets cover ``adata.var_names``.

    Parameters
    ----------
    {adata}
        Its ``var_names`` are matched to gene-set genes.
    gene_sets
        Gene sets: a ``source``/``target`` DataFrame (e.g. :func:`sclens.datasets.go_gene_sets`),
        a dict of gene lists, or a GMT path.
    case_sensitive
        Match symbols case-sensitively (default; ``False`` also accepts a unique match ignoring
        case, e.g. ``Cd79a`` and ``CD79A``).
    aliases
        Also match a var name that is an alias of a gene-set symbol: ``"human"`` uses the aliases
        of the embedded snapshot (:func:`sclens.datasets.gene_aliases`), or pass a DataFrame with
        ``alias`` and ``symbol`` columns or a dict ``{{alias: symbol}}``; ``None`` disables it.

    Returns
    -------
    A dict with ``n_var_names``, ``n_covered`` (var names found in at least one set),
    ``fraction_covered``, ``n_exact`` / ``n_case`` / ``n_alias`` (how they matched),
    ``n_set_genes`` and ``n_set_genes_covered`` (distinct gene-set genes), ``n_sets`` and
    ``n_sets_covered`` (sets with at least one gene in the data), and ``uncovered_examples``
    (up to 5 var names without a set).
    """
    check_adata(adata)
    net = as_network(gene_sets)
    var_names = [str(v) for v in adata.var_names]
    mapping, counts = match_genes(var_names, net["target"], case_sensitive=case_sensitive, aliases=aliases)
    covered = set(mapping.values())
    n_sets_covered = int(net.loc[net["target"].isin(mapping), "source"].nunique())
    return {
        "n_var_names": len(var_names),
        "n_covered": len(covered),
        "fraction_covered": len(covered) / max(len(var_names), 1),
        "n_exact": counts["exact"],
        "n_case": counts["case"],
        "n_alias": counts["alias"],
        "n_set_genes": int(net["target"].nunique()),
        "n_set_genes_covered": len(mapping),
        "n_sets": int(net["source"].nunique()),
        "n_sets_covered": n_sets_covered,
        "uncovered_examples": [v for v in var_names if v not in covered][:5],
    }

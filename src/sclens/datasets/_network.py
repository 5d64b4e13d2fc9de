"""Normalise user gene sets (DataFrame, dict, GMT path) into one long network table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from typing import Any

import pandas as pd

NETWORK_COLUMNS = ["source", "target"]


def as_network(gene_sets: Any) -> pd.DataFrame:
    """Turn gene sets into a decoupler-style long DataFrame.

    Parameters
    ----------
    gene_sets
        One of: a DataFrame with ``source`` (set ID) and ``target`` (gene) columns, optionally
        ``name`` and ``namespace`` (GO terms; e.g. from :func:`sclens.datasets.go_gene_sets`);
        a mapping ``{set_name: iterable of genes}``; or the path of a GMT file.

    Returns
    -------
    A new DataFrame with string columns ``source``, ``target``, ``name`` (the set's description,
    ``source`` when unknown) and ``namespace`` (empty when unknown), without duplicate rows.
    """
    if isinstance(gene_sets, (str, PathLike)):
        from ._gmt import read_gmt

        gene_sets = read_gmt(path=gene_sets)
    if isinstance(gene_sets, Mapping):
        rows = [(str(s), str(g)) for s, genes in gene_sets.items() for g in _as_iterable(s, genes)]
        net = pd.DataFrame(rows, columns=NETWORK_COLUMNS)
    elif isinstance(gene_sets, pd.DataFrame):
        missing = [c for c in NETWORK_COLUMNS if c not in gene_sets.columns]
        if missing:
            msg = (
                f"Gene-set DataFrame lacks column(s) {missing}; it has {list(gene_sets.columns)}. "
                "Use a decoupler-style network with `source` (set) and `target` (gene) columns, "
                "e.g. `df.rename(columns={'geneset': 'source', 'genesymbol': 'target'})`."
            )
            raise KeyError(msg)
        keep = [c for c in ["source", "target", "name", "namespace"] if c in gene_sets.columns]
        net = gene_sets[keep].copy()
        for col in keep:  # categorical columns (go_gene_sets) would reject fillna("") below
            if isinstance(net[col].dtype, pd.CategoricalDtype):
                net[col] = net[col].astype(object)
    else:
        msg = (
            f"gene_sets must be a DataFrame with `source`/`target` columns, a dict of gene lists, "
            f"or a GMT path; got {type(gene_sets).__name__}."
        )
        raise TypeError(msg)
    net = net.dropna(subset=NETWORK_COLUMNS)
    for col in NETWORK_COLUMNS:
        net[col] = net[col].astype(str)
    if "name" not in net.columns:
        net["name"] = net["source"]
    if "namespace" not in net.columns:
        net["namespace"] = ""
    net["name"] = net["name"].astype(str)
    net["namespace"] = net["namespace"].fillna("").astype(str)
    net = net.drop_duplicates(subset=NETWORK_COLUMNS).reset_index(drop=True)
    if net.empty:
        msg = "The gene sets are empty: no (set, gene) pair was found."
        raise ValueError(msg)
    return net


def _as_iterable(name: Any, genes: Any) -> Iterable[Any]:
    if isinstance(genes, str) or not isinstance(genes, Iterable):
        msg = f"Gene set {name!r} must be an iterable of gene names, got {type(genes).__name__}."
        raise TypeError(msg)
    return genes

"""Normalise user gene sets (DataFrame, dict, GMT path) into one long network table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from ._utils import open_text

NETWORK_COLUMNS = ["source", "target"]

#: what every ``gene_sets`` parameter accepts: a long ``source`` / ``target`` table, a dict of gene lists or a GMT path
GeneSetsLike = pd.DataFrame | Mapping[str, Sequence[str]] | str | PathLike


def read_gmt_table(path: str | PathLike) -> pd.DataFrame:
    """Return the gene sets of a GMT file as ``source`` / ``target`` / ``name``.

    See :func:`sclens.datasets.read_gmt`.
    """
    rows: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 3:
                msg = (
                    f"GMT line {lineno} of {str(path)!r} has {len(fields)} tab-separated field(s): "
                    f"{line[:60]!r}. Each line needs name<TAB>description<TAB>gene(s); if the file "
                    "separates fields by spaces, convert them to tabs."
                )
                raise ValueError(msg)
            name, description = fields[0].strip(), fields[1]
            if not name:
                msg = f"GMT line {lineno} of {str(path)!r} has an empty set name."
                raise ValueError(msg)
            if name in seen:
                msg = (
                    f"Duplicate gene-set name {name!r} in {str(path)!r} (lines {seen[name]} and {lineno}); "
                    "set names must be unique: rename or merge the sets."
                )
                raise ValueError(msg)
            seen[name] = lineno
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not genes:
                msg = f"Gene set {name!r} on GMT line {lineno} of {str(path)!r} has no genes."
                raise ValueError(msg)
            rows.extend((name, gene, description) for gene in genes)
    if not rows:
        msg = f"The GMT file {str(path)!r} contains no gene set."
        raise ValueError(msg)
    return pd.DataFrame(rows, columns=["source", "target", "name"])


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
        if not Path(gene_sets).exists():
            msg = f"gene_sets: GMT file {str(gene_sets)!r} not found (or pass a DataFrame or a mapping of gene sets)."
            raise FileNotFoundError(msg)
        gene_sets = read_gmt_table(gene_sets)
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

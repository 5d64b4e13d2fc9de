"""Read and write GMT gene-set files (tab-separated: name, description, genes...)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd

from .._docs import doc_params
from .._network import GeneSetsLike, read_gmt_table


@doc_params()
def read_gmt(path: str | PathLike) -> pd.DataFrame:
    """Read a GMT file into a long gene-set table.

    Each line is ``name<TAB>description<TAB>gene<TAB>gene...``. Only tabs separate fields, so
    descriptions may contain spaces (MSigDB, Enrichr and Reactome files do). Blank lines are
    skipped, empty trailing fields ignored, and a gene repeated within a set is kept once.
    Gzip-compressed files are read transparently.

    Parameters
    ----------
    path
        Path of the ``.gmt`` (or ``.gmt.gz``) file.

    Returns
    -------
    DataFrame with string columns ``source`` (set name), ``target`` (gene) and ``name`` (the
    description), one row per (set, gene) in file order.
    """
    return read_gmt_table(path)


@doc_params()
def write_gmt(gene_sets: GeneSetsLike, path: str | PathLike) -> None:
    """Write gene sets to a GMT file that :func:`read_gmt` reads back unchanged.

    Parameters
    ----------
    gene_sets
        A DataFrame with ``source`` and ``target`` columns (``name``, when present, becomes the
        description, e.g. the GO term name), a mapping ``{{set name: genes}}``, or a GMT path.
    path
        Output path; an existing file is overwritten.

    Returns
    -------
    Nothing; sets are written in order of first appearance, one line each, genes in table order.
    """
    from .._network import as_network

    net = as_network(gene_sets)
    bad = [s for s in net["source"].unique() if "\t" in s or "\n" in s]
    bad += [g for g in net["target"].unique() if "\t" in g or "\n" in g or not g.strip()]
    if bad:
        msg = f"Set names and genes cannot contain tabs or newlines or be blank for GMT; offending: {bad[:5]}."
        raise ValueError(msg)
    lines = []
    for source, group in net.groupby("source", sort=False):
        description = str(group["name"].iloc[0]).replace("\t", " ").replace("\n", " ")
        lines.append("\t".join([str(source), description, *group["target"].astype(str)]))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

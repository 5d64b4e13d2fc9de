"""Read Gene Ontology and gene annotations from Bioconductor ``GO.db`` / ``org.*.eg.db`` SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from .._docs import doc_params
from ._ontology import GeneOntology

_NAMESPACES = ("BP", "MF", "CC")
# GO.db relationship labels -> OBO relation names; only these two carry annotations up the graph
_RELATIONS = {"isa": "is_a", "part of": "part_of"}


def _connect(path: str | PathLike, what: str) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        msg = (
            f"{what} SQLite file {str(path)!r} not found. It ships in the Bioconductor package "
            "(e.g. `GO.db/extdata/GO.sqlite`, `org.Hs.eg.db/extdata/org.Hs.eg.sqlite`); on Debian "
            "`apt-get download r-bioc-go.db r-bioc-org.hs.eg.db` and `dpkg-deb -x` unpack them."
        )
        raise FileNotFoundError(msg)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        con.close()
        msg = (
            f"{str(path)!r} is not a {what} SQLite database ({e}); pass the `.sqlite` file from the package's extdata."
        )
        raise ValueError(msg) from e
    needed = {"go_term", "go_bp_parents"} if what == "GO.db" else {"gene_info", "go_bp", "alias"}
    if not needed <= tables:
        con.close()
        msg = f"{str(path)!r} does not look like a {what} SQLite file: tables {sorted(needed - tables)} are missing."
        raise ValueError(msg)
    return con


def _metadata(con: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in con.execute("SELECT name, value FROM metadata")}


def read_bioconductor_tables(
    go_db: str | PathLike, org_db: str | PathLike
) -> tuple[GeneOntology, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Read the term graph, direct annotations, aliases and provenance from Bioconductor SQLite files.

    Returns ``(ontology, annotations, aliases, metadata)``: ``annotations`` has columns ``symbol``,
    ``go_id``, ``evidence`` (direct annotations only, as in ``org.*.eg.db``'s ``go_bp``/``go_mf``/
    ``go_cc`` tables); ``aliases`` has columns ``alias``, ``symbol``.
    """
    go = _connect(go_db, "GO.db")
    try:
        go_meta = _metadata(go)
        terms = pd.read_sql_query(
            "SELECT go_id, term AS name, ontology AS namespace FROM go_term WHERE ontology IN ('BP','MF','CC')",
            go,
        )
        edges = []
        for ns in _NAMESPACES:
            edges.append(
                pd.read_sql_query(
                    f"SELECT c.go_id AS child, p.go_id AS parent, r.relationship_type AS relation "
                    f"FROM go_{ns.lower()}_parents r JOIN go_term c ON c._id = r._id "
                    f"JOIN go_term p ON p._id = r._parent_id WHERE p.ontology = '{ns}'",
                    go,
                )
            )
    finally:
        go.close()
    edges = pd.concat(edges, ignore_index=True)
    edges = edges[edges["relation"].isin(list(_RELATIONS))].copy()
    edges["relation"] = edges["relation"].map(_RELATIONS)
    ontology = GeneOntology(terms, edges, release=go_meta.get("GOSOURCEDATE", "unknown"))

    org = _connect(org_db, "org.*.eg.db")
    try:
        org_meta = _metadata(org)
        annotations = pd.concat(
            [
                pd.read_sql_query(
                    f"SELECT g.symbol AS symbol, a.go_id AS go_id, a.evidence AS evidence "
                    f"FROM go_{ns.lower()} a JOIN gene_info g ON g._id = a._id",
                    org,
                )
                for ns in _NAMESPACES
            ],
            ignore_index=True,
        )
        aliases = pd.read_sql_query(
            "SELECT a.alias_symbol AS alias, g.symbol AS symbol FROM alias a JOIN gene_info g ON g._id = a._id",
            org,
        )
    finally:
        org.close()
    annotations = annotations.drop_duplicates(ignore_index=True)
    aliases = aliases[aliases["alias"] != aliases["symbol"]].drop_duplicates(ignore_index=True)
    metadata = {
        "go_release": go_meta.get("GOSOURCEDATE", "unknown"),
        "go_source_url": go_meta.get("GOSOURCEURL", ""),
        "annotation_source": org_meta.get("GOEGSOURCENAME", "Entrez Gene") + " gene2go",
        "annotation_date": org_meta.get("GOEGSOURCEDATE", "unknown"),
        "organism": org_meta.get("ORGANISM", "unknown"),
        "taxid": org_meta.get("TAXID", ""),
    }
    return ontology, annotations, aliases, metadata


@doc_params()
def read_bioconductor_go(
    go_db: str | PathLike,
    org_db: str | PathLike,
    *,
    namespaces: Sequence[str] = _NAMESPACES,
    min_size: int = 15,
    max_size: int = 500,
    evidence_exclude: Sequence[str] = ("ND",),
    propagate: bool = True,
) -> pd.DataFrame:
    """Build GO gene sets from Bioconductor ``GO.db`` and ``org.*.eg.db`` SQLite files.

    Useful for organisms and releases other than the embedded human snapshot: any
    ``org.Xx.eg.db`` package (e.g. ``org.Mm.eg.db``) and the matching ``GO.db`` work.

    Parameters
    ----------
    go_db
        Path of ``GO.sqlite`` (in ``GO.db/extdata``).
    org_db
        Path of the organism's SQLite file, e.g. ``org.Hs.eg.sqlite`` (in ``org.Hs.eg.db/extdata``).
    namespaces
        GO namespaces to keep, any of ``"BP"``, ``"MF"``, ``"CC"``.
    min_size, max_size
        Keep terms with this many genes (after propagation and evidence filtering), bounds included.
    evidence_exclude
        GO evidence codes whose annotations are dropped (``"ND"``: no biological data available).
    propagate
        Add each gene to all ancestors of its terms along ``is_a`` and ``part_of`` (true path rule).

    Returns
    -------
    Long DataFrame with categorical columns ``source`` (GO ID), ``target`` (gene symbol), ``name``
    (term name) and ``namespace`` (``"BP"``, ``"MF"``, ``"CC"``), as :func:`go_gene_sets`.
    """
    from ._go import gene_sets_with_provenance

    ontology, annotations, _, metadata = read_bioconductor_tables(go_db, org_db)
    kw = {"min_size": min_size, "max_size": max_size, "evidence_exclude": evidence_exclude, "propagate": propagate}
    return gene_sets_with_provenance(ontology, annotations, metadata, "GO (Bioconductor)", namespaces=namespaces, **kw)

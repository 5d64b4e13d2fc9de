"""Gene Ontology gene sets: the embedded human snapshot or a pinned GO release, propagated up the graph."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from .._docs import doc_params
from ._ontology import ROOTS, GeneOntology

logger = logging.getLogger("sclens")

SOURCES = ("embedded", "download")
ORGANISMS = ("human", "mouse")


def _check_namespaces(namespaces: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(namespaces, str):
        namespaces = (namespaces,)
    out = []
    for ns in namespaces:
        if not isinstance(ns, str) or ns not in ROOTS:
            msg = f"Unknown GO namespace {ns!r}; namespaces must be a subset of ('BP', 'MF', 'CC')."
            raise ValueError(msg)
        if ns not in out:
            out.append(ns)
    if not out:
        msg = "namespaces is empty; choose at least one of 'BP', 'MF', 'CC'."
        raise ValueError(msg)
    return tuple(out)


def _check_sizes(min_size: int, max_size: int) -> None:
    for label, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f"{label} must be a positive integer, got {value!r}."
            raise ValueError(msg)
    if min_size > max_size:
        msg = f"min_size ({min_size}) is larger than max_size ({max_size}); no gene set can pass."
        raise ValueError(msg)


def build_gene_sets(
    ontology: GeneOntology,
    annotations: pd.DataFrame,
    *,
    namespaces: Sequence[str] = ("BP", "MF", "CC"),
    min_size: int = 15,
    max_size: int = 500,
    evidence_exclude: Sequence[str] = ("ND",),
    propagate: bool = True,
) -> pd.DataFrame:
    """Turn direct annotations (``symbol``, ``go_id``, ``evidence``) into filtered GO gene sets."""
    namespaces = _check_namespaces(namespaces)
    _check_sizes(min_size, max_size)
    if isinstance(evidence_exclude, str):
        evidence_exclude = (evidence_exclude,)
    ann = annotations[~annotations["evidence"].isin(list(evidence_exclude))]
    go_ids = ann["go_id"].astype(str)
    if ontology.alt_ids:
        go_ids = go_ids.map(lambda t: ontology.alt_ids.get(t, t))
    term_codes = ontology._index.get_indexer(go_ids)
    known = term_codes >= 0
    if not known.all():
        logger.info("GO: %d annotations to terms missing from the ontology were dropped.", int((~known).sum()))
    gene_codes, genes = pd.factorize(ann["symbol"].astype(str).to_numpy()[known], sort=True)
    term_codes = term_codes[known]
    n_terms = len(ontology)
    mat = sparse.csr_matrix(
        (np.ones(len(gene_codes), dtype=np.int32), (gene_codes, term_codes)), shape=(len(genes), n_terms)
    )
    if propagate:
        mat = mat @ ontology.ancestor_matrix
    mat = mat.tocsc()
    mat.sum_duplicates()
    sizes = np.diff(mat.indptr)
    in_ns = ontology.terms["namespace"].isin(namespaces).to_numpy()
    keep = np.flatnonzero(in_ns & (sizes >= min_size) & (sizes <= max_size))
    if keep.size == 0:
        largest = int(sizes[in_ns].max()) if in_ns.any() else 0
        msg = (
            f"No GO term in namespaces {list(namespaces)} has between min_size={min_size} and "
            f"max_size={max_size} genes (after evidence filter {list(evidence_exclude)}, "
            f"propagate={propagate}); the largest term has {largest} genes. Widen the size range."
        )
        raise ValueError(msg)
    sub = mat[:, keep].tocoo()
    order = np.lexsort((sub.row, sub.col))
    term_ids = ontology._index[keep]
    src = pd.Categorical.from_codes(sub.col[order], categories=term_ids)
    tgt = pd.Categorical.from_codes(sub.row[order], categories=genes)
    names = ontology.terms["name"].to_numpy()[keep]
    spaces = ontology.terms["namespace"].to_numpy()[keep]
    name_cat = pd.Categorical(names)
    net = pd.DataFrame(
        {
            "source": src,
            "target": tgt,
            "name": pd.Categorical.from_codes(name_cat.codes[sub.col[order]], categories=name_cat.categories),
            "namespace": pd.Categorical(spaces[sub.col[order]], categories=[ns for ns in ROOTS if ns in namespaces]),
        }
    )
    net["source"] = net["source"].cat.remove_unused_categories()
    net["target"] = net["target"].cat.remove_unused_categories()
    return net


def _check_choice(label: str, value: Any, choices: Sequence[str], hint: str = "") -> None:
    if value not in choices:
        msg = f"Unknown {label} {value!r}; choose one of {list(choices)}.{hint}"
        raise ValueError(msg)


def _load(organism: str, source: str, release: str | None) -> tuple[GeneOntology, pd.DataFrame, pd.DataFrame, dict]:
    _check_choice("source", source, SOURCES)
    _check_choice("organism", organism, ORGANISMS)
    if source == "embedded":
        from ._snapshot import load_snapshot

        ontology, annotations, aliases, metadata = load_snapshot()
        if organism != "human":
            msg = (
                f"The embedded GO snapshot covers human only, not {organism!r}; use "
                "`source='download'` (pinned GO release) or `read_bioconductor_go(...)`."
            )
            raise ValueError(msg)
        if release is not None and release != metadata["go_release"]:
            msg = (
                f"The embedded GO snapshot is release {metadata['go_release']}, not {release!r}; use "
                "`release=None`, or `source='download'` for another pinned release."
            )
            raise ValueError(msg)
        return ontology, annotations, aliases, metadata
    from ._download import load_go_release

    return load_go_release(organism=organism, release=release)


@lru_cache(maxsize=8)
def _cached_gene_sets(organism, source, release, namespaces, min_size, max_size, evidence_exclude, propagate):
    ontology, annotations, _, metadata = _load(organism, source, release)
    kw = {"min_size": min_size, "max_size": max_size, "evidence_exclude": evidence_exclude, "propagate": propagate}
    net = gene_sets_with_provenance(ontology, annotations, metadata, f"GO ({source})", namespaces=namespaces, **kw)
    net.attrs.update(evidence_exclude=",".join(evidence_exclude))
    net.attrs.update(propagate=str(propagate), min_size=str(min_size), max_size=str(max_size))
    return net


def gene_sets_with_provenance(
    ontology: GeneOntology, annotations: pd.DataFrame, metadata: dict, source: str, **kwargs: Any
) -> pd.DataFrame:
    """Return :func:`build_gene_sets` of the tables with their provenance in ``attrs``.

    The GO release, annotation date and licence travel with the table into the annotation params;
    ``gene_set_source`` names where the tables came from.
    """
    net = build_gene_sets(ontology, annotations, **kwargs)
    net.attrs = {k: str(v) for k, v in metadata.items() if not isinstance(v, dict)}
    net.attrs["gene_set_source"] = source
    return net


@doc_params()
def go_gene_sets(
    organism: Literal["human", "mouse"] = "human",
    *,
    namespaces: Sequence[str] = ("BP", "MF", "CC"),
    min_size: int = 15,
    max_size: int = 500,
    source: Literal["embedded", "download"] = "embedded",
    release: str | None = None,
    evidence_exclude: Sequence[str] = ("ND",),
    propagate: bool = True,
) -> pd.DataFrame:
    """Gene Ontology gene sets as a decoupler-style long table.

    ``source="embedded"`` reads the human snapshot shipped with sclens (GO release 2022-07-01,
    NCBI gene2go annotations of 2022-09-12 from Bioconductor ``org.Hs.eg.db``) and works offline.
    ``source="download"`` fetches a pinned GO release (``go-basic.obo`` and the organism's GAF)
    with pooch into the user cache and parses it. GO is licensed CC BY 4.0 (Gene Ontology
    Consortium); please credit it.

    Parameters
    ----------
    organism
        ``"human"`` (embedded or download) or ``"mouse"`` (download only, MGI annotations).
    namespaces
        GO namespaces to keep, any of ``"BP"`` (biological process), ``"MF"`` (molecular function),
        ``"CC"`` (cellular component).
    min_size, max_size
        Keep terms annotated with this many genes (after evidence filtering and propagation),
        bounds included.
    source
        ``"embedded"`` (offline snapshot) or ``"download"`` (pinned GO release, cached).
    release
        GO release date such as ``"2022-07-01"``; ``None`` is the snapshot's release (embedded) or
        the default pinned release (download).
    evidence_exclude
        Evidence codes whose annotations are dropped before propagation; ``("ND",)`` drops "no
        biological data available" placeholders, add ``"IEA"`` to drop electronic annotations.
    propagate
        Apply the true path rule: a gene annotated to a term also belongs to all its ancestors
        along ``is_a`` and ``part_of``.

    Returns
    -------
    DataFrame with one row per (term, gene) and categorical columns ``source`` (GO ID),
    ``target`` (gene symbol, case as in the source), ``name`` (term name) and ``namespace``
    (``"BP"``, ``"MF"``, ``"CC"``). ``DataFrame.attrs`` records the provenance (``go_release``,
    ``annotation_date``, ``licence``, filters). Term metadata (ancestors, depth, first-level
    category) comes from :func:`go_ontology`.

    Examples
    --------
    >>> go = sl.datasets.go_gene_sets(namespaces=("BP",))
    >>> go.loc[go["source"] == "GO:0042113", "target"].head()
    """
    namespaces = _check_namespaces(namespaces)
    evidence_exclude = (evidence_exclude,) if isinstance(evidence_exclude, str) else tuple(evidence_exclude)
    net = _cached_gene_sets(
        organism, source, release, namespaces, min_size, max_size, evidence_exclude, bool(propagate)
    )
    out = net.copy()
    out.attrs = dict(net.attrs)
    return out


@doc_params()
def go_ontology(*, source: Literal["embedded", "download"] = "embedded", release: str | None = None) -> GeneOntology:
    """Return the Gene Ontology graph (``is_a`` and ``part_of``) for term names, ancestors and categories.

    Parameters
    ----------
    source
        ``"embedded"`` (the snapshot behind :func:`go_gene_sets`) or ``"download"`` (pinned
        ``go-basic.obo`` fetched with pooch).
    release
        GO release date; ``None`` is the snapshot's release or the default pinned release.

    Returns
    -------
    A :class:`~sclens.datasets.GeneOntology` with ``name(term)``, ``namespace(term)``,
    ``parents``, ``children``, ``ancestors``, ``descendants``, ``first_level(term)`` (children of
    the namespace root that the term descends from), ``depth`` and ``first_level_table(terms)``.
    Do not modify it: it is shared within the process.
    """
    if source == "download":
        from ._download import load_go_ontology

        return load_go_ontology(release=release)
    return _load("human", source, release)[0]


@doc_params()
def gene_aliases(
    *,
    organism: Literal["human", "mouse"] = "human",
    source: Literal["embedded", "download"] = "embedded",
    release: str | None = None,
) -> pd.DataFrame:
    """Gene-symbol aliases (previous symbols and synonyms) mapped to official symbols.

    Parameters
    ----------
    organism
        ``"human"`` or ``"mouse"`` (download only).
    source
        ``"embedded"`` (NCBI aliases from ``org.Hs.eg.db``) or ``"download"`` (the synonyms column
        of the GO release's GAF).
    release
        GO release date; ``None`` is the snapshot's release or the default pinned release.

    Returns
    -------
    DataFrame with columns ``alias`` and ``symbol``; an alias can point to several symbols.
    """
    return _load(organism, source, release)[2].copy()

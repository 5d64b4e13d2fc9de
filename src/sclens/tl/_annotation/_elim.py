"""GO-graph decorrelation of the over-representation test: topGO's ``elim`` (Alexa et al. 2006).

A gene annotated to a specific GO term is, by the true path rule, also in every ancestor of that
term, so when a specific term is enriched its ancestors are enriched through the same genes and
fill the top of the list (immune response, cell activation ...). ``elim`` tests the terms bottom-up
(every term after all its descendants): the genes of a term significant at :data:`ELIM_CUTOFF` are
removed from all its ancestors before those are tested. The universe and the study set stay whole
(topGO's ``elimCount``), so an ancestor is reported only when its own remaining genes are enriched.

All contrasts are processed at once: terms are grouped by height (longest path down to a leaf
among the tested terms), and at each height only the (term, contrast) pairs with a significant
descendant are tested again, their removed genes being one sparse product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from ..._network import GeneSetsLike
    from ...datasets import GeneOntology
    from ._enrich import GeneSets

logger = logging.getLogger("sclens")

#: raw p-value at which a term's genes are removed from its ancestors (topGO's default ``cutOff``)
ELIM_CUTOFF = 0.01
#: values of ``go_algorithm``
GO_ALGORITHMS = ("classic", "elim")
#: (term, contrast) pairs tested again per sparse product (bounds the memory of the removed genes)
PAIR_CHUNK = 20_000


@dataclass(frozen=True)
class TermGraph:
    """The ``is_a`` / ``part_of`` closure among the terms of a :class:`~sclens.tl._annotation._enrich.GeneSets`.

    ``descendants``: CSR terms x terms, ``[t, d] = 1`` when ``d`` is a strict descendant of ``t``;
    ``heights``: term indices grouped by height, leaves first (every term after its descendants);
    ``n_linked``: terms found in the ontology.
    """

    descendants: sparse.csr_matrix
    heights: list[np.ndarray]
    n_linked: int
    cutoff: float = ELIM_CUTOFF


def check_go_algorithm(go_algorithm: Any) -> str:
    """Validate ``go_algorithm``."""
    if not isinstance(go_algorithm, str) or go_algorithm not in GO_ALGORITHMS:
        msg = f"go_algorithm must be {' or '.join(map(repr, GO_ALGORITHMS))}, got {go_algorithm!r}."
        raise ValueError(msg)
    return go_algorithm


def ontology_of(gene_sets: GeneSetsLike) -> GeneOntology:
    """Return the GO graph of ``gene_sets``: the release they were built from (``attrs``), else the embedded one."""
    from ...datasets import go_ontology

    attrs = getattr(gene_sets, "attrs", {}) or {}
    if str(attrs.get("gene_set_source", "")) == "GO (download)":
        return go_ontology(source="download", release=str(attrs["go_release"]))
    return go_ontology()


def term_graph(gs: GeneSets, ontology: GeneOntology) -> TermGraph:
    """Restrict ``ontology``'s closure to the terms of ``gs``; terms it lacks stand alone (tested classically)."""
    terms = [ontology.alt_ids.get(t, t) for t in gs.terms["term"].astype(str)]
    codes = ontology._index.get_indexer(terms)
    known = np.flatnonzero(codes >= 0)
    if known.size == 0:
        example = ", ".join(terms[:3])
        msg = (
            f"go_algorithm='elim' needs GO term IDs, but none of the gene sets' terms (e.g. {example}) are in the "
            f"GO graph (release {ontology.release}); use go_algorithm='classic' for other gene sets."
        )
        raise ValueError(msg)
    if known.size < len(terms):
        n_out = len(terms) - known.size
        logger.info("go_algorithm='elim': %d of %d terms are not in GO; tested classically.", n_out, len(terms))
    n = len(terms)
    anc = ontology.ancestor_matrix[codes[known]][:, codes[known]].tocoo()  # [t, a]: a is t or an ancestor of t
    strict = anc.row != anc.col
    desc = sparse.csr_matrix(
        (np.ones(int(strict.sum()), dtype=np.float64), (known[anc.col[strict]], known[anc.row[strict]])), shape=(n, n)
    )
    height = np.zeros(n, dtype=np.int64)
    while True:  # longest path down to a leaf: one more step per round
        below = desc.multiply(height + 1.0).max(axis=1).toarray().ravel().astype(np.int64)
        if (below <= height).all():
            break
        height = np.maximum(height, below)
    heights = [np.flatnonzero(height == h) for h in range(int(height.max()) + 1)]
    return TermGraph(desc, heights, int(known.size))


def elim(
    res: dict[str, np.ndarray], study: np.ndarray, background: np.ndarray, gs: GeneSets, graph: TermGraph
) -> dict[str, np.ndarray]:
    """Re-test the terms of a classic ORA result (``res``: terms x contrasts) with topGO's elim.

    ``study`` (already within ``background``) and ``background``: boolean contrasts x genes.
    Returns the elim ``pvalue`` and the counts it was computed from, ``n_overlap_elim`` and
    ``set_size_elim`` (the term's study and background genes left after the removal).
    """
    from ._enrich import hypergeom_sf

    p = res["pvalue"].copy()
    hits, size = res["n_overlap"].astype(np.float64), res["set_size"].astype(np.float64)
    n_bg, n_de = background.sum(axis=1).astype(float), study.sum(axis=1).astype(float)
    members = gs.matrix.tocoo()
    n_genes = members.shape[1]
    pairs = np.sort(members.row.astype(np.int64) * n_genes + members.col)  # (term, gene) keys, for lookups
    members = members.tocsr()
    sig = np.nan_to_num(p, nan=1.0) < graph.cutoff
    for rows in graph.heights[1:]:  # leaves have nothing to remove
        has = np.asarray(graph.descendants[rows] @ sig.astype(np.float64)) > 0  # a significant descendant
        ti, ci = np.nonzero(has & ~np.isnan(p[rows]))
        for start in range(0, ti.size, PAIR_CHUNK):
            t, c = rows[ti[start : start + PAIR_CHUNK]], ci[start : start + PAIR_CHUNK]
            d = graph.descendants[t].tocoo()
            keep = sig[d.col, c[d.row]]
            pick = sparse.csr_matrix((np.ones(int(keep.sum())), (d.row[keep], d.col[keep])), shape=(t.size, len(sig)))
            removed = (pick @ members).tocoo()  # genes of each pair's significant descendants
            r, g = removed.row, removed.col
            key = t[r] * n_genes + g
            own = pairs[np.minimum(np.searchsorted(pairs, key), pairs.size - 1)] == key  # the term's own genes
            r, g = r[own], g[own]
            hits[t, c] -= np.bincount(r, weights=study[c[r], g], minlength=t.size)
            size[t, c] -= np.bincount(r, weights=background[c[r], g], minlength=t.size)
            p[t, c] = np.where(hits[t, c] > 0, hypergeom_sf(hits[t, c], n_bg[c], size[t, c], n_de[c]), 1.0)
        sig[rows] = np.nan_to_num(p[rows], nan=1.0) < graph.cutoff
    return {"pvalue": p, "n_overlap_elim": hits, "set_size_elim": size}

"""The Gene Ontology as a queryable graph: names, namespaces, ancestors, first-level categories."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger("sclens")

ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}
NAMESPACE_ALIASES = {
    "biological_process": "BP",
    "molecular_function": "MF",
    "cellular_component": "CC",
    "P": "BP",
    "F": "MF",
    "C": "CC",
}
PROPAGATING_RELATIONS = ("is_a", "part_of")


class GeneOntology:
    """Gene Ontology terms and their ``is_a`` / ``part_of`` graph.

    Parameters
    ----------
    terms
        DataFrame with columns ``go_id``, ``name``, ``namespace`` (``"BP"``/``"MF"``/``"CC"`` or the
        OBO spelling ``biological_process`` ...), one row per non-obsolete term.
    edges
        DataFrame with columns ``child``, ``parent``, ``relation`` (``"is_a"`` or ``"part_of"``).
    release
        GO release date, e.g. ``"2022-07-01"``.
    alt_ids
        Optional mapping of secondary (alternative) IDs to primary term IDs.

    Examples
    --------
    >>> go = sl.datasets.go_ontology()
    >>> go.name("GO:0042113")
    'B cell activation'
    >>> go.first_level("GO:0042113")  # children of biological_process above the term
    ['GO:0002376', 'GO:0009987']
    """

    def __init__(
        self,
        terms: pd.DataFrame,
        edges: pd.DataFrame,
        *,
        release: str = "unknown",
        alt_ids: Mapping[str, str] | None = None,
    ) -> None:
        terms = terms[["go_id", "name", "namespace"]].drop_duplicates("go_id")
        ns = terms["namespace"].astype(str).map(lambda v: NAMESPACE_ALIASES.get(v, v))
        bad = sorted(set(ns) - set(ROOTS))
        if bad:
            msg = f"Unknown GO namespace(s) {bad} in the term table; expected BP, MF, CC."
            raise ValueError(msg)
        self.release = str(release)
        self.terms = pd.DataFrame(
            {"name": terms["name"].astype(str).to_numpy(), "namespace": ns.to_numpy()},
            index=pd.Index(terms["go_id"].astype(str).to_numpy(), name="go_id"),
        )
        self._index = pd.Index(self.terms.index)
        self.alt_ids = dict(alt_ids or {})
        edges = edges[["child", "parent", "relation"]]
        known = edges["child"].isin(self._index) & edges["parent"].isin(self._index)
        if not known.all():
            logger.debug("GO graph: dropped %d edges to unknown terms.", int((~known).sum()))
        edges = edges[known & edges["relation"].isin(PROPAGATING_RELATIONS)]
        self.edges = edges.drop_duplicates().reset_index(drop=True)
        self._child_codes = self._index.get_indexer(self.edges["child"])
        self._parent_codes = self._index.get_indexer(self.edges["parent"])

    def __len__(self) -> int:
        return len(self.terms)

    def __contains__(self, term: object) -> bool:
        return term in self._index

    def __repr__(self) -> str:
        counts = self.terms["namespace"].value_counts()
        parts = ", ".join(f"{ns}: {int(counts.get(ns, 0))}" for ns in ROOTS)
        return f"GeneOntology(release={self.release!r}, {len(self)} terms ({parts}), {len(self.edges)} edges)"

    # -- lookups ---------------------------------------------------------------------------------
    def _code(self, term: str) -> int:
        term = self.alt_ids.get(term, term)
        code = self._index.get_indexer([term])[0]
        if code < 0:
            msg = f"GO term {term!r} is not in this ontology (release {self.release}); check the ID."
            raise KeyError(msg)
        return int(code)

    def _ids(self, codes: Iterable[int]) -> list[str]:
        return sorted(self._index[np.asarray(list(codes), dtype=int)])

    def name(self, term: str) -> str:
        """Name of ``term`` (e.g. ``'B cell activation'``)."""
        return str(self.terms["name"].iat[self._code(term)])

    def names(self, terms: Iterable[str]) -> pd.Series:
        """Names of several terms, indexed by term ID (NaN for IDs not in the ontology)."""
        terms = [self.alt_ids.get(t, t) for t in terms]
        return self.terms["name"].reindex(terms)

    def namespace(self, term: str) -> str:
        """Namespace of ``term``: ``"BP"``, ``"MF"`` or ``"CC"``."""
        return str(self.terms["namespace"].iat[self._code(term)])

    def parents(self, term: str) -> list[str]:
        """Direct parents of ``term`` along ``is_a`` and ``part_of``."""
        code = self._code(term)
        return self._ids(self._parent_codes[self._child_codes == code])

    def children(self, term: str) -> list[str]:
        """Direct children of ``term`` along ``is_a`` and ``part_of``."""
        code = self._code(term)
        return self._ids(self._child_codes[self._parent_codes == code])

    def ancestors(self, term: str, *, include_self: bool = False) -> list[str]:
        """All ancestors of ``term`` along ``is_a`` and ``part_of`` (true path rule)."""
        code = self._code(term)
        row = self.ancestor_matrix.indices[self.ancestor_matrix.indptr[code] : self.ancestor_matrix.indptr[code + 1]]
        return self._ids(c for c in row if include_self or c != code)

    def descendants(self, term: str, *, include_self: bool = False) -> list[str]:
        """All descendants of ``term`` along ``is_a`` and ``part_of``."""
        code = self._code(term)
        col = self._descendant_matrix
        rows = col.indices[col.indptr[code] : col.indptr[code + 1]]
        return self._ids(c for c in rows if include_self or c != code)

    def root(self, term: str) -> str:
        """Root term of the namespace of ``term`` (e.g. ``GO:0008150`` biological_process)."""
        return ROOTS[self.namespace(term)]

    def first_level(self, term: str) -> list[str]:
        """First-level categories of ``term``: children of its namespace root that it descends from.

        A term can descend from several first-level terms (the graph is not a tree); all are
        returned, sorted. The root itself has none; a first-level term returns itself.
        """
        root = self.root(term)
        ancestors = set(self.ancestors(term, include_self=True))
        return [c for c in self.children(root) if c in ancestors] if root in self else []

    @cached_property
    def depth(self) -> pd.Series:
        """Shortest number of ``is_a``/``part_of`` steps from each term up to its root (roots: 0)."""
        depth = np.full(len(self), -1, dtype=np.int64)
        frontier = self._index.get_indexer([r for r in ROOTS.values() if r in self._index])
        depth[frontier] = 0
        level = 0
        while len(frontier):
            level += 1
            nxt = self._child_codes[np.isin(self._parent_codes, frontier)]
            nxt = np.unique(nxt[depth[nxt] < 0])
            depth[nxt] = level
            frontier = nxt
        return pd.Series(depth, index=self._index, name="depth")

    def first_level_table(self, terms: Iterable[str] | None = None) -> pd.DataFrame:
        """Long table of ``term``, ``first_level`` (ID) and ``first_level_name``, one row per pair.

        Use it to colour gene-set terms (or SAE features by their terms) by their broad category;
        ``terms=None`` covers every term of the ontology.
        """
        terms = list(self._index if terms is None else terms)
        firsts = {ns: self._index.get_indexer(self.children(root)) for ns, root in ROOTS.items() if root in self._index}
        codes = np.array([self._code(t) for t in terms], dtype=np.int64)
        sub = self.ancestor_matrix[codes]
        rows = []
        for cols in firsts.values():
            hit = sub[:, cols].tocoo()
            rows.append(pd.DataFrame({"i": hit.row, "f": cols[hit.col]}))
        hits = pd.concat(rows, ignore_index=True).sort_values(["i", "f"])
        out = pd.DataFrame(
            {
                "term": np.asarray(terms, dtype=object)[hits["i"].to_numpy()],
                "first_level": self._index[hits["f"].to_numpy()],
            }
        )
        out["first_level_name"] = self.terms["name"].reindex(out["first_level"]).to_numpy()
        return out.reset_index(drop=True)

    # -- graph closure -----------------------------------------------------------------------------
    @cached_property
    def ancestor_matrix(self) -> sparse.csr_matrix:
        """Boolean CSR matrix (terms x terms): entry ``[t, a]`` is 1 when ``a`` is ``t`` or an ancestor."""
        n = len(self)
        eye = sparse.identity(n, dtype=np.int32, format="csr")
        step = sparse.csr_matrix(
            (np.ones(len(self._child_codes), dtype=np.int32), (self._child_codes, self._parent_codes)), shape=(n, n)
        )
        closure = (eye + step).tocsr()
        closure.data[:] = 1
        while True:  # repeated squaring: paths of length 2^k after k rounds
            nxt = closure @ closure
            nxt.data[:] = 1
            if nxt.nnz == closure.nnz:
                break
            closure = nxt.tocsr()
        closure.sort_indices()
        return closure

    @cached_property
    def _descendant_matrix(self) -> sparse.csc_matrix:
        return self.ancestor_matrix.tocsc()

"""Enrichment of DE results in gene sets: our ORA (hypergeometric) or any decoupler method."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse, special

from ..._network import as_network
from ..._stats import fdr_bh
from ._types import DEResult

if TYPE_CHECKING:
    from ._elim import TermGraph

RESULT_COLUMNS = [
    "feature",
    "term",
    "name",
    "namespace",
    "n_overlap",
    "set_size",
    "n_de",
    "odds_ratio",
    "pvalue",
    "padj",
]


@dataclass
class GeneSets:
    """Gene sets restricted to ``var_names``: term table and a sparse terms x genes membership."""

    terms: pd.DataFrame  # index 0..T-1, columns term, name, namespace
    matrix: sparse.csr_matrix
    net: pd.DataFrame  # long table restricted to var_names
    attrs: dict
    given: pd.DataFrame = field(repr=False)  # ``as_network`` of the gene sets given (all namespaces and genes)
    #: the GO graph among ``terms``: set, :func:`ora` decorrelates the terms along it (``go_algorithm="elim"``)
    graph: TermGraph | None = field(default=None, repr=False)

    @cached_property
    def ic(self) -> pd.Series:
        """Information content of every term given (:func:`network_ic` of ``given``), computed once."""
        return network_ic(self.given)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the sorted (term, gene) pairs tested: equal for the same sets on the same genes."""
        import hashlib

        pairs = np.sort((self.net["source"].astype(str) + "\t" + self.net["target"].astype(str)).unique())
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Return the ``params["gene_sets"]`` entry of a result: attributes, sizes and :attr:`fingerprint`."""
        return {**self.attrs, "n_sets": len(self.terms), "n_pairs": len(self.net), "fingerprint": self.fingerprint}


def network_ic(net: pd.DataFrame) -> pd.Series:
    """Return ``-ln(n_term / n_namespace)`` per term of a network made by ``as_network`` (index ``source``).

    See :func:`sclens.tl._annotation._redundancy.information_content`; ``as_network`` dropped duplicate pairs, so
    a term's row count is its number of genes.
    """
    size = net["source"].value_counts(sort=False)
    ns = net.drop_duplicates("source").set_index("source")["namespace"]
    total = net.drop_duplicates(["namespace", "target"])["namespace"].value_counts(sort=False)
    ic = np.log(ns.map(total).reindex(size.index).astype(float) / size.astype(float))
    return ic.rename("ic").sort_index()


def gene_set_matrix(gene_sets: Any, var_names: pd.Index, *, namespaces: list[str] | None = None) -> GeneSets:
    """Normalise ``gene_sets`` with ``as_network`` and index them against ``var_names``."""
    attrs = dict(getattr(gene_sets, "attrs", {}) or {})
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()
        msg = (
            f"`adata.var_names` has {len(dup)} duplicated gene name(s) (e.g. {list(map(str, dup[:3]))}); "
            "genes must be unique to match gene sets: run `adata.var_names_make_unique()` first."
        )
        raise ValueError(msg)
    net = given = as_network(gene_sets)
    if namespaces is not None and (net["namespace"] != "").any():
        net = net[net["namespace"].isin(namespaces)]
    genes = pd.Index(var_names.astype(str))
    pos = genes.get_indexer(net["target"])
    net = net[pos >= 0].reset_index(drop=True)
    if net.empty:
        example = ", ".join(map(str, genes[:3]))
        msg = (
            "None of the gene-set genes are in `adata.var_names` "
            f"(e.g. {example}); use the same identifiers (symbols vs Ensembl IDs) and species."
        )
        raise ValueError(msg)
    terms = net.drop_duplicates("source")[["source", "name", "namespace"]].rename(columns={"source": "term"})
    terms = terms.reset_index(drop=True)
    row = pd.Index(terms["term"]).get_indexer(net["source"])
    col = genes.get_indexer(net["target"])
    mat = sparse.csr_matrix((np.ones(row.size), (row, col)), shape=(len(terms), genes.size))
    return GeneSets(terms, mat, net, {k: str(v) for k, v in attrs.items() if np.isscalar(v)}, given)


def check_testable(gs: GeneSets, *, min_size: int, max_size: int | None) -> None:
    """Refuse gene sets of which no term can be tested (all outside ``[min_size, max_size]`` in ``var_names``)."""
    sizes = np.asarray(gs.matrix.sum(axis=1)).ravel()
    ok = (sizes >= min_size) & (sizes <= (np.inf if max_size is None else max_size))
    if ok.any():
        return
    msg = (
        f"No gene set can be tested: the {sizes.size} set(s) have {int(sizes.min())}-{int(sizes.max())} genes "
        f"among `adata.var_names` ({gs.net['target'].nunique()} of the data's genes are in any set), outside "
        f"min_size={min_size}, max_size={max_size}. Lower `min_size` / raise `max_size`, or use gene sets that "
        "share more genes with the data (same identifiers and species)."
    )
    raise ValueError(msg)


def up_genes(de: DEResult, *, de_alpha: float, min_log2fc: float, max_genes: int | None = None) -> np.ndarray:
    """Boolean contrasts x genes: ``padj < de_alpha`` and ``log2fc > min_log2fc``.

    ``max_genes``: of those, keep at most the ``max_genes`` of largest ``log2fc`` per contrast (ties
    broken by the Wald statistic, then by gene order), so that a contrast calling thousands of genes
    is represented by its most specific ones rather than by the largest gene sets.
    """
    with np.errstate(invalid="ignore"):
        up = (de.padj < de_alpha) & (de.log2fc > min_log2fc)
    if max_genes is None or up.shape[1] <= max_genes:
        return up
    over = np.flatnonzero(up.sum(axis=1) > max_genes)
    for c in over:
        idx = np.flatnonzero(up[c])
        order = np.lexsort((-np.nan_to_num(de.stat[c, idx], nan=-np.inf), -de.log2fc[c, idx]))
        up[c, idx[order[max_genes:]]] = False
    return up


def ora(
    study: np.ndarray, background: np.ndarray, gs: GeneSets, *, min_size: int, max_size: int | None
) -> dict[str, np.ndarray]:
    """One-sided hypergeometric test of every term (rows) for every contrast (columns).

    ``study`` / ``background``: boolean contrasts x genes. Terms with fewer than ``min_size`` (or more
    than ``max_size``) background genes are not tested (NaN); BH runs over each contrast's tested terms.
    With ``gs.graph`` set, the p-values are topGO's elim (:func:`sclens.tl._annotation._elim.elim`),
    the odds ratios are those of the counts left after elimination, and the result has those counts
    as ``n_overlap_elim`` and ``set_size_elim``.
    """
    bg = sparse.csr_matrix(background.T.astype(np.float64))
    de = sparse.csr_matrix((study & background).T.astype(np.float64))
    big_k = np.asarray((gs.matrix @ bg).todense())  # terms x contrasts: set size in background
    hits = np.asarray((gs.matrix @ de).todense())
    n_bg = background.sum(axis=1)[None, :].astype(float)
    n_de = (study & background).sum(axis=1)[None, :].astype(float)
    testable = big_k >= min_size
    if max_size is not None:
        testable &= big_k <= max_size
    p = np.where(testable, 1.0, np.nan)
    go = testable & (hits > 0)
    ii, jj = np.nonzero(go)
    p[ii, jj] = hypergeom_sf(hits[ii, jj], n_bg[0, jj], big_k[ii, jj], n_de[0, jj])
    out = {"pvalue": p, "n_overlap": hits, "set_size": big_k, "n_de": np.broadcast_to(n_de, p.shape)}
    a, k = hits, big_k
    if gs.graph is not None:
        from ._elim import elim

        out.update(elim(out, study & background, background, gs, gs.graph))
        a, k = out["n_overlap_elim"], out["set_size_elim"]
    b = n_de - a
    c = k - a
    d = n_bg - k - b
    with np.errstate(divide="ignore", invalid="ignore"):
        out["odds_ratio"] = np.where(b * c > 0, a * d / (b * c), np.where(a * d > 0, np.inf, np.nan))
    out["padj"] = fdr_bh(out["pvalue"].T).T
    return out


def hypergeom_sf(k: np.ndarray, total: np.ndarray, good: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``P(X >= k)`` for ``X ~ Hypergeom(total, good, draws)``, vectorised (``scipy.stats.hypergeom.sf(k - 1, ...)``).

    SciPy sums the probability mass in a Python loop per element; here the mass at ``k`` (from
    log-gamma functions) is multiplied by the sum of the ratios of successive masses, all elements
    at once, each stopping when its terms no longer change the sum (or the support ends).
    """
    k, total, good, draws = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(k, total, good, draws))
    top = np.minimum(good, draws)
    bottom = np.maximum(0.0, draws - (total - good))
    out = np.where(k <= bottom, 1.0, 0.0)
    rows = np.flatnonzero((k > bottom) & (k <= top))
    kk, n_, m_, big, last = k[rows], good[rows], draws[rows], total[rows], top[rows]
    log_p = _lchoose(n_, kk) + _lchoose(big - n_, m_ - kk) - _lchoose(big, m_)
    term, acc = np.ones(rows.size), np.ones(rows.size)
    live = np.arange(rows.size)
    while live.size:
        j = kk[live]
        term[live] *= (n_[live] - j) * (m_[live] - j) / ((j + 1) * (big[live] - n_[live] - m_[live] + j + 1))
        kk[live] += 1
        acc[live] += term[live]
        huge = live[acc[live] > 1e250]  # keep the running sum finite: move its scale into log_p
        acc[huge], term[huge], log_p[huge] = acc[huge] * 1e-250, term[huge] * 1e-250, log_p[huge] + 250 * np.log(10)
        live = live[(kk[live] < last[live]) & (term[live] > 1e-17 * acc[live])]
    out[rows] = np.minimum(np.exp(log_p + np.log(acc)), 1.0)
    return out


def _lchoose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return -np.log(n + 1) - special.betaln(n - k + 1, k + 1)  # betaln: no cancellation of large terms


def decoupler_method(
    method: str, de: DEResult, study: np.ndarray, gs: GeneSets, ids: list[str], genes: pd.Index, *, min_size: int
) -> dict[str, np.ndarray]:
    """Run ``decoupler.mt.<method>`` on the contrasts x genes matrix of Wald statistics (one call)."""
    import decoupler as dc

    func = getattr(dc.mt, method, None)
    if func is None or method.startswith("_") or not callable(func):
        msg = f"Unknown enrichment {method!r}: use 'ora' or a decoupler method such as 'ulm', 'mlm', 'wsum'."
        raise ValueError(msg)
    data = pd.DataFrame(np.nan_to_num(de.stat), index=ids, columns=genes)
    net = gs.net[["source", "target"]].copy()
    res = func(data, net, tmin=min_size, verbose=False)
    es, pv = res if isinstance(res, tuple) else (res, None)
    es = es.reindex(columns=gs.terms["term"]).T.to_numpy()  # terms x contrasts
    padj = pv.reindex(columns=gs.terms["term"]).T.to_numpy() if pv is not None else np.full(es.shape, np.nan)
    study = study & de.tested
    hits = np.asarray((gs.matrix @ sparse.csr_matrix(study.T.astype(float))).todense())
    big_k = np.asarray((gs.matrix @ sparse.csr_matrix(de.tested.T.astype(float))).todense())
    return {
        "score": es,
        "pvalue": np.full(es.shape, np.nan),
        "padj": padj,
        "n_overlap": hits,
        "set_size": big_k,
        "n_de": np.broadcast_to(study.sum(axis=1)[None, :], es.shape),
    }


def collect(res: dict[str, np.ndarray], gs: GeneSets, features: np.ndarray, keep: np.ndarray) -> pd.DataFrame:
    """Long table of the kept (term, contrast) pairs, sorted by contrast then p-value."""
    ii, jj = np.nonzero(keep)
    # one str object per term, shared by its rows (``.astype(str)`` of the rows made one per row: ~0.4 GB
    # at 1.4 million kept rows)
    text = {c: np.asarray(gs.terms[c].astype(str), dtype=object) for c in ("term", "name", "namespace")}
    effect = "odds_ratio" if "odds_ratio" in res else "score"
    cols = [*RESULT_COLUMNS]
    cols[cols.index("odds_ratio")] = effect
    df = pd.DataFrame(
        {
            "feature": np.asarray(features, dtype=np.int64)[jj],
            "term": text["term"][ii],
            "name": text["name"][ii],
            "namespace": text["namespace"][ii],
            "n_overlap": res["n_overlap"][ii, jj].astype(np.int64),
            "set_size": res["set_size"][ii, jj].astype(np.int64),
            "n_de": res["n_de"][ii, jj].astype(np.int64),
            effect: res[effect][ii, jj].astype(float),
            "pvalue": res["pvalue"][ii, jj].astype(float),
            "padj": res["padj"][ii, jj].astype(float),
        },
        columns=cols,
    )
    for extra in ("n_overlap_elim", "set_size_elim"):
        if extra in res:
            df[extra] = res[extra][ii, jj].astype(np.int64)
    if "mean_log2fc" in res:
        df["mean_log2fc"] = res["mean_log2fc"][ii, jj].astype(float)
    return df

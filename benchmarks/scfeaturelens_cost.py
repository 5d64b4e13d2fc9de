"""Per-feature cost of ``annotate_features`` vs the published scFeatureLens functions, one run.

The published code is *not* part of sclens: pass the path of a checkout of
github.com/viktoriaschuster/sc_mechinterp (its ``tools/scFeatureLens/analysis_functions.py``
is imported from there). Its per-feature loop is replayed as in its ``pipeline.py``
(``perform_differential_expression_and_go_enrichment``): ``DEG_analysis_unpaired`` (Welch t-tests
through a 2-process ``multiprocessing.Pool``), ranking by fold change, its threshold fallbacks,
then ``go_analysis`` for every gene set through the same pool. Two shims, neither changing what
is computed: its ``stats.ttest_ind(a, b, 0, False)`` (positional ``axis``, ``equal_var``, refused by
current SciPy) is run as ``ttest_ind(a, b, axis=0, equal_var=False)`` by the pool given to it, which
returns each result as a picklable record (current SciPy's ``TtestResult`` cannot be sent back from
a worker process; the published code would catch that and keep every p-value at 1); and
``goatools`` (imported at the top of the module, unused by these two functions) is replaced by an
empty stub when it is not installed.

Identical inputs for both: 10,000 cells x 13,431 genes of synthetic counts (``benchmarks/atlas.py``'s
simulator; genes named by GO symbols), library-normalised for the published functions (as the
``scfeaturelens`` flavour does); 930 GO BP gene sets of 10-500 genes; 30 features, each active in
567 cells (the high set) with <= 1,000 zero cells as the low set (the same cells for both: sclens'
seeded sample, given to the published loop). sclens: ``annotate_features`` on the 30 features, both
flavours, timed end to end (size factors, dispersions, gene-set indexing included) after an untimed
run of each (numba compiles its kernels on first use and caches them on disk). Wall-clock and
CPU time (the published code's includes its pool workers') are both printed: on a shared machine
the CPU ratio is the steadier one. The table is stored through ``benchmarks/_results.py``
(``benchmarks/results/scfeaturelens_cost.{json,md}``).

Run: ``python benchmarks/scfeaturelens_cost.py /path/to/sc_mechinterp [--published-features 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
from _results import save

N_CELLS, N_GENES, N_SETS, N_FEATURES, N_HIGH, N_LOW = 10_000, 13_431, 930, 30, 567, 1000


def _ttest(a, b, axis, equal_var):
    """``stats.ttest_ind`` with keyword arguments; the result as a plain picklable record.

    (SciPy's ``TtestResult`` no longer pickles -- "cannot pickle 'module' object" -- so a pool
    cannot send it back; the published code would then silently keep every p-value at 1.)
    """
    from scipy import stats

    res = stats.ttest_ind(a, b, axis=axis, equal_var=equal_var)
    return types.SimpleNamespace(statistic=float(res.statistic), pvalue=float(res.pvalue))


class CurrentScipyPool:
    """A ``multiprocessing.Pool`` whose ``starmap`` runs ``stats.ttest_ind`` with keyword arguments."""

    def __init__(self, processes: int) -> None:
        self.pool = mp.get_context("fork").Pool(processes)

    def starmap(self, func, iterable):
        from scipy import stats

        return self.pool.starmap(_ttest if func is stats.ttest_ind else func, iterable)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def _cpu() -> float:
    """CPU seconds of this process and of its exited children (the pool's workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def import_published(repo: Path):
    try:
        import goatools  # noqa: F401
    except ImportError:
        for name in ("goatools", "goatools.obo_parser", "goatools.anno", "goatools.anno.gaf_reader"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["goatools.obo_parser"].GODag = None
        sys.modules["goatools.anno.gaf_reader"].GafReader = None
    sys.path.insert(0, str(repo / "tools" / "scFeatureLens"))
    import analysis_functions

    return analysis_functions


def make_inputs(seed: int = 0):
    """AnnData (counts, 30 planted features in ``obsm['X_sae']``) and 930 GO BP gene sets."""
    import anndata as ad
    from atlas import Simulator, gene_names, go_bp
    from scipy import sparse

    go = go_bp()
    genes = gene_names(go, N_GENES)
    sim = Simulator(genes, go, seed=seed)
    counts, _ = sim.block(N_CELLS)
    share = sim.last_share
    rng = np.random.default_rng(seed)
    acts = np.zeros((N_CELLS, N_FEATURES), dtype=np.float32)
    for f in range(N_FEATURES):  # feature f: the 567 cells using program f most (random tie-break)
        top = np.argsort(-(share[:, f] + 1e-6 * rng.random(N_CELLS)))[:N_HIGH]
        acts[top, f] = 1.0 + share[top, f]
    adata = ad.AnnData(counts, var=pd.DataFrame(index=genes))
    adata.obsm["X_sae"] = sparse.csr_matrix(acts)
    adata.uns["sae"] = {
        "params": {"architecture": "planted"},
        "features": pd.DataFrame({"kind": "live"}, index=[str(i) for i in range(N_FEATURES)]),
    }
    go = go[go["target"].isin(set(genes))]
    sizes = go.groupby("source", observed=True).size()
    terms = rng.choice(sizes[(sizes >= 10) & (sizes <= 500)].index, N_SETS, replace=False)
    return adata, go[go["source"].isin(terms)].reset_index(drop=True)


def published_loop(af, z, genes, hi, lo, ref, pool) -> pd.DataFrame:
    """One feature through the published functions, as ``pipeline.py`` runs it."""
    gene_p_values = af.DEG_analysis_unpaired(z[hi], z[lo], genes, pool)
    ranked = gene_p_values.sort_values(by="fold_change", ascending=True)
    ranked["rank"] = range(1, len(ranked) + 1)
    ref_idx = {name: i for i, name in enumerate(ref.var["name"])}
    ranked["ref_idx"] = [ref_idx.get(g) for g in ranked["gene"]]
    p_thr, fc_thr = 1e-5, 2.0
    if ranked["adj_p_value"].min() > p_thr:
        p_thr = 0.05
    if ranked["fold_change"].max() < fc_thr:
        fc_thr = None
    results = pool.starmap(af.go_analysis, [(ranked, i, ref, p_thr, fc_thr) for i in range(ref.X.shape[0])])
    return pd.DataFrame([r[:-1] for r in results])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("repo", type=Path, help="checkout of viktoriaschuster/sc_mechinterp")
    ap.add_argument("--published-features", type=int, default=2, help="features timed through the published code")
    args = ap.parse_args()
    import anndata as ad
    from scipy import sparse

    import sclens as sl
    from sclens.tl._annotation._cellsets import cell_sets

    af = import_published(args.repo)
    adata, gs = make_inputs()
    print(f"{adata.n_obs} cells x {adata.n_vars} genes, {gs['source'].nunique()} gene sets, {N_FEATURES} features")
    ours = {}
    for flavor in ("sclens", "scfeaturelens"):  # untimed first: numba compiles its kernels on first use
        sl.tl.annotate_features(adata, gene_sets=gs, high_quantile=0.9, flavor=flavor, key_added="warm_up")
    for flavor in ("sclens", "scfeaturelens"):
        t0, c0 = time.perf_counter(), time.process_time()
        sl.tl.annotate_features(adata, gene_sets=gs, high_quantile=0.9, flavor=flavor, key_added=flavor)
        ours[flavor] = ((time.perf_counter() - t0) / N_FEATURES, (time.process_time() - c0) / N_FEATURES)
    sets = cell_sets(sparse.csc_matrix(adata.obsm["X_sae"]), np.arange(N_FEATURES), high_quantile=0.9,
                     low_quantile=None, n_low=N_LOW, min_high=10, mask=None, seed=0, strict=True)  # fmt: skip
    n_high, n_low = np.diff(sets.high.indptr), np.diff(sets.low.indptr)
    x = adata.X.tocsr().astype(np.float64)
    lib = np.asarray(x.sum(1)).ravel()
    z = np.asarray((sparse.diags(np.exp(np.mean(np.log(lib))) / lib) @ x).todense())
    terms = gs["source"].unique()
    ref_x = sparse.csr_matrix(
        (np.ones(len(gs)), (pd.Index(terms).get_indexer(gs["source"]), adata.var_names.get_indexer(gs["target"]))),
        shape=(terms.size, adata.n_vars),
    )
    ref = ad.AnnData(ref_x, obs=pd.DataFrame({"go_id": terms}), var=pd.DataFrame({"name": adata.var_names.to_numpy()}))
    pool = CurrentScipyPool(2)
    t0, c0 = time.perf_counter(), _cpu()
    for f in range(args.published_features):
        hi, lo = sets.high[:, f].indices, sets.low[:, f].indices
        published_loop(af, z, adata.var_names.to_numpy(), hi, lo, ref, pool)
    wall = time.perf_counter() - t0
    pool.close()  # the workers' CPU time is counted once they have exited
    published = (wall / args.published_features, (_cpu() - c0) / args.published_features)
    print(f"high cells per feature {int(n_high.min())}-{int(n_high.max())}, low {int(n_low.min())}-{int(n_low.max())}")
    rows = [("published DEG_analysis_unpaired + go_analysis", args.published_features, *published, 1.0, 1.0)]
    rows += [
        (f'sclens annotate_features(flavor="{k}")', N_FEATURES, w, c, published[0] / w, published[1] / c)
        for k, (w, c) in ours.items()
    ]
    cols = ["method", "features timed", "s per feature", "CPU s per feature", "speed-up", "speed-up (CPU)"]
    dataset = (f"{N_CELLS:,} cells x {N_GENES:,} genes (benchmarks/atlas.py simulator), {N_SETS} GO BP sets, "
               f"{N_FEATURES} features ({N_HIGH} high vs <= {N_LOW} low cells)")  # fmt: skip
    save("scfeaturelens_cost", [dict(zip(cols, r, strict=True)) for r in rows], dataset=dataset,
         params={**vars(args), "repo": str(args.repo)})  # fmt: skip


if __name__ == "__main__":
    main()

"""Benchmark of sl.tl.annotate_features: speed of the fast engine, and its agreement with pyDESeq2 on real cells.

Speed: 50,000 cells x 2,000 genes of negative-binomial counts with 100 planted programs (15 genes
each); 1,000 live SAE features = noisy copies of the program codes (10 per program). Gene sets: the
100 program sets plus ~10,000 random sets with GO-like sizes (synthetic; the planted sets are known,
so recovery can be scored). Stored in ``results/annotate_speed.md``.

Agreement (``--deseq2``, issue 20): ``sl.datasets.immune559_counts()`` (559 real immune cells, 9,810
genes), PCA of log-normalised counts, leiden clusters, ``fit_sae`` with its defaults,
``feature_specificity`` by cluster; the 2 most specific local features of every cluster and every
20th global feature. Both engines get the same high / low cells (``high_quantile=0.95``); per
feature: Spearman correlation of the Wald statistics over all genes both tested and over genes with
pyDESeq2 base mean >= 0.5, Jaccard index of the genes at ``padj < 0.05`` and of the GO terms kept by
ORA of the up-regulated genes (BH ``padj < 0.05``, and the paper's raw ``p < 0.01``). pyDESeq2 takes
about a minute per feature on a loaded machine: ``--cache`` keeps its tables between runs. Stored in
``results/deseq2_agreement_<label>.md``; the engine before issue 20 was measured by running this
script with the ``main`` branch's ``src`` first on ``PYTHONPATH`` (``--label before``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/annotate.py [--n-cells 50000] [--deseq2 --cache /tmp/deseq2.pkl]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse, stats

import sclens as sl
from sclens.tl._annotation import _de_fast as fast
from sclens.tl._annotation._cellsets import cell_sets, resolve_features
from sclens.tl._annotation._de import Expression
from sclens.tl._annotation._enrich import gene_set_matrix, ora, up_genes


def simulate(n_cells, n_genes, n_programs=100, genes_per_program=15, n_features=1000, seed=0):
    rng = np.random.default_rng(seed)
    genes = [f"gene_{g:04d}" for g in range(n_genes)]
    perm = rng.permutation(n_genes)
    member = np.zeros((n_programs, n_genes), dtype=np.float32)
    for p in range(n_programs):
        member[p, perm[(p * genes_per_program) % n_genes : (p * genes_per_program) % n_genes + genes_per_program]] = 1
    active = rng.random((n_cells, n_programs)) < rng.uniform(0.02, 0.2, n_programs)
    codes = np.where(active, 0.5 + rng.gamma(2.0, 0.5, active.shape), 0.0).astype(np.float32)
    log_base = rng.normal(size=n_genes).astype(np.float32)
    blocks = []
    for start in range(0, n_cells, 5000):
        c = codes[start : start + 5000]
        logits = log_base + c @ member
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        mu = rng.lognormal(np.log(2000), 0.3, (c.shape[0], 1)) * prob
        blocks.append(sparse.csr_matrix(rng.poisson(rng.gamma(10.0, mu / 10.0)).astype(np.float32)))
    counts = sparse.vstack(blocks).tocsr()
    prog_of = np.arange(n_features) % n_programs
    noise = rng.lognormal(0, 0.3, (n_cells, n_features)).astype(np.float32)
    acts = codes[:, prog_of] * noise
    acts[rng.random(acts.shape) < 0.1] = 0  # dropout
    acts = sparse.csr_matrix(acts)
    sets = [(f"program_{p:03d}", genes[g]) for p in range(n_programs) for g in np.flatnonzero(member[p])]
    sizes = np.clip(rng.lognormal(np.log(20), 1.0, 10_000).astype(int), 5, 500)
    for j, s in enumerate(sizes):
        sets += [(f"random_{j:05d}", genes[g]) for g in rng.choice(n_genes, s, replace=False)]
    adata = AnnData(counts, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts
    adata.obsm["X_sae"] = acts
    freq = np.asarray((acts > 0).mean(0)).ravel()
    adata.uns["sae"] = {
        "params": {"architecture": "planted"},
        "features": pd.DataFrame({"frequency": freq, "kind": "live"}, index=[str(i) for i in range(n_features)]),
    }
    return adata, pd.DataFrame(sets, columns=["source", "target"]), prog_of


def timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return dt, peak


RESULTS = Path(__file__).parent / "results"
AGREEMENT_KW = {"high_quantile": 0.95, "n_low": 1000, "min_high": 10}  # the cell sets of both engines


def immune_sae():
    """immune559 (real cells, raw counts): PCA of log-normalised counts, leiden clusters, ``fit_sae`` defaults."""
    import scanpy as sc

    adata = sl.datasets.immune559_counts()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=30, random_state=0)
    sc.pp.neighbors(adata, random_state=0)
    sc.tl.leiden(adata, resolution=1.0, random_state=0, flavor="igraph", n_iterations=2)
    sl.tl.fit_sae(adata, use_rep="X_pca")
    sl.tl.feature_specificity(adata, groupby="leiden")
    return adata


def pick_features(adata):
    """The 2 most specific local features of every leiden cluster and every 20th global one (by frequency)."""
    ft = adata.uns["sae"]["features"]
    local = ft[ft["kind"] == "local"].sort_values("effect", ascending=False).groupby("top_group").head(2)
    glob = ft[ft["kind"] == "global"].sort_values("frequency").iloc[::20]
    return sorted(int(i) for i in [*local.index, *glob.index]), set(map(int, local.index))


def deseq2_tables(adata, feats, cache, *, only_cached=False):
    """pyDESeq2's DE tables (the reference engine, ``de_method="deseq2"``) of ``feats``, cached by cell sets.

    ``only_cached``: leave out the features whose table is not in the cache yet.
    """
    from sclens.tl._annotation._de_deseq2 import deseq2_one

    acts, f = resolve_features(adata, key="sae", features=feats)
    sets = cell_sets(acts, f, low_quantile=None, mask=None, seed=0, **AGREEMENT_KW)
    store = pd.read_pickle(cache) if cache and Path(cache).exists() else {}
    expr, out = Expression(adata, layer="counts"), {}
    for j, feat in enumerate(sets.features):
        hi, lo = sets.high[:, j].indices, sets.low[:, j].indices
        key = (int(feat), hashlib.sha1(np.concatenate([hi, [-1], lo]).tobytes()).hexdigest())
        if key not in store and only_cached:
            continue
        if key not in store:
            t0 = time.perf_counter()
            store[key] = deseq2_one(expr.dense(np.concatenate([hi, lo]), integer=True), hi.size, adata.var_names)
            print(f"pyDESeq2 feature {feat}: {time.perf_counter() - t0:.0f} s", flush=True)
            if cache:
                pd.to_pickle(store, cache)
        out[str(int(feat))] = store[key]
    return out


def as_result(table):
    cols = ("log2FoldChange", "stat", "pvalue", "padj", "baseMean")
    arrays = [table[c].to_numpy(dtype=float)[None] for c in cols]
    arrays[3] = np.where(np.isfinite(arrays[2]) & np.isnan(arrays[3]), 1.0, arrays[3])  # as de_method="deseq2"
    return fast.DEResult(*arrays)


def kept_terms(de, gsm):
    """Kept terms of one contrast at the default rule (ORA of up genes, BH padj < 0.05) and the paper's raw p < 0.01."""
    res = ora(up_genes(de, de_alpha=0.05, min_log2fc=1.0), de.tested, gsm, min_size=5, max_size=None)
    return {
        rule: set(np.flatnonzero(res[col][:, 0] < cut))
        for rule, col, cut in (("bh", "padj", 0.05), ("p", "pvalue", 0.01))
    }


def agreement(label, cache, *, only_cached=False):
    """Fast engine vs pyDESeq2 on real cells: the same high / low cells, ``return_de`` of both engines."""
    adata = immune_sae()
    feats, local = pick_features(adata)
    go = sl.datasets.go_gene_sets("human")
    t0 = time.perf_counter()
    sl.tl.annotate_features(adata, gene_sets=go, layer="counts", features=feats, return_de=feats, key_added="fast",
                            **AGREEMENT_KW)  # fmt: skip
    seconds = time.perf_counter() - t0
    ref = deseq2_tables(adata, feats, cache, only_cached=only_cached)
    gsm = gene_set_matrix(go, adata.var_names)
    rows = []
    for f, table in ref.items():
        a, b = adata.uns["fast"]["de"][f], table.reindex(adata.var_names)
        de_a = fast.DEResult(
            *(a[c].to_numpy(dtype=float)[None] for c in ("log2fc", "stat", "pvalue", "padj", "base_mean"))
        )
        de_b = as_result(b)
        ok = np.isfinite(de_a.stat[0]) & np.isfinite(de_b.stat[0])
        hi_mean = ok & (de_b.base_mean[0] >= 0.5)
        sig_a, sig_b = de_a.padj[0] < 0.05, de_b.padj[0] < 0.05
        terms_a, terms_b = kept_terms(de_a, gsm), kept_terms(de_b, gsm)
        rows.append({
            "feature": int(f), "kind": "local" if int(f) in local else "global",
            "Spearman all": stats.spearmanr(de_a.stat[0, ok], de_b.stat[0, ok]).statistic,
            "Spearman base mean>=0.5": stats.spearmanr(de_a.stat[0, hi_mean], de_b.stat[0, hi_mean]).statistic,
            "padj<0.05 fast": int(sig_a.sum()), "padj<0.05 pyDESeq2": int(sig_b.sum()),
            "Jaccard padj<0.05": jaccard(set(np.flatnonzero(sig_a)), set(np.flatnonzero(sig_b))),
            "terms fast": len(terms_a["bh"]), "terms pyDESeq2": len(terms_b["bh"]),
            "Jaccard terms BH<0.05": jaccard(terms_a["bh"], terms_b["bh"]),
            "Jaccard terms p<0.01": jaccard(terms_a["p"], terms_b["p"]),
        })  # fmt: skip
    per_feature = pd.DataFrame(rows)
    metrics = [c for c in per_feature.columns if c.startswith(("Spearman", "Jaccard"))]
    summary = pd.DataFrame({
        "metric": metrics,
        "median": [per_feature[c].median() for c in metrics],
        "min": [per_feature[c].min() for c in metrics],
    })  # fmt: skip
    head = (f"# Fast engine vs pyDESeq2 on real cells ({label})\n\n`python benchmarks/annotate.py --deseq2 --label "
            f"{label}`: immune559 ({adata.n_obs} cells x {adata.n_vars} genes), {len(ref)} SAE features "
            f"({per_feature['kind'].eq('local').sum()} local), fast engine {seconds:.1f} s.\n\n")  # fmt: skip
    text = (
        head
        + summary.to_markdown(index=False, floatfmt=".3f")
        + "\n\n"
        + per_feature.to_markdown(index=False, floatfmt=".3f")
        + "\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"deseq2_agreement_{label}.md").write_text(text)
    print(text)


def jaccard(a, b):
    return len(a & b) / len(a | b) if a | b else 1.0


def speed(n_cells, n_genes):
    """Seconds and traced peak memory of the fast engine on 250 and 1,000 simulated features."""
    t0 = time.perf_counter()
    adata, gs, prog_of = simulate(n_cells, n_genes)
    print(f"simulated {adata.n_obs} cells x {adata.n_vars} genes, {adata.obsm['X_sae'].shape[1]} features, "
          f"{gs['source'].nunique()} gene sets in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    rows = []
    for n_feat in (250, 1000):
        feats = list(range(n_feat))
        dt, peak = timed(lambda f=feats: sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", features=f))
        rows.append(("fast", n_cells, n_feat, dt, dt / n_feat, peak))
    top = adata.uns["sae_go"]["results"].groupby("feature")["term"].first()
    recovered = np.mean([top.get(f) == f"program_{prog_of[f]:03d}" for f in range(1000)])
    table = pd.DataFrame(rows, columns=["engine", "cells", "features", "total_s", "s_per_feature", "peak_traced_MiB"])
    threads, load = os.environ.get("OMP_NUM_THREADS", "all"), os.getloadavg()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = (
        f"`python benchmarks/annotate.py --n-cells {n_cells} --n-genes {n_genes}` ({threads} BLAS threads, "
        f"load average {load:.1f} at the end)\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n\n"
        f"peak RSS {peak:.0f} MiB; planted program is the top term for {recovered:.1%} of 1,000 features\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "annotate_speed.md").write_text(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-cells", type=int, default=50_000)
    ap.add_argument("--n-genes", type=int, default=2_000)
    ap.add_argument("--deseq2", action="store_true", help="agreement with pyDESeq2 on real cells (immune559)")
    ap.add_argument("--skip-speed", action="store_true", help="only the agreement")
    ap.add_argument("--label", default="after", help="name of the agreement's results file")
    ap.add_argument("--cache", default=None, help="pickle of pyDESeq2's tables (reused across runs)")
    ap.add_argument("--only-cached", action="store_true", help="only the features pyDESeq2 has already run on")
    args = ap.parse_args()
    if not args.skip_speed:
        speed(args.n_cells, args.n_genes)
    if args.deseq2:
        agreement(args.label, args.cache, only_cached=args.only_cached)


if __name__ == "__main__":
    main()

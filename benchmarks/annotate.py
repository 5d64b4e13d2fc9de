"""Benchmark of sl.tl.annotate_features: speed of the fast engine, and its agreement with pyDESeq2 on real cells.

Speed: 50,000 cells x 2,000 genes of negative-binomial counts with 100 planted programs (15 genes
each); 1,000 live SAE features = noisy copies of the program codes (10 per program). Gene sets: the
100 program sets plus ~10,000 random sets with GO-like sizes (synthetic; the planted sets are known,
so recovery can be scored). Wall-clock and process CPU seconds of the whole ``annotate_features``,
with the machine's load average before and after; stored in ``results/annotate_speed.{json,md}``.

Agreement (``--deseq2``, issue 20): ``sl.datasets.immune559_counts()`` (559 real immune cells, 9,810
genes), PCA of log-normalised counts, leiden clusters, ``fit_sae`` with its defaults,
``feature_specificity`` by cluster; the 2 most specific local features of every cluster and every
20th global feature. Both engines get the same high / low cells (``high_quantile=0.95``); per
feature: Spearman correlation of the Wald statistics over all genes both tested and over genes with
pyDESeq2 base mean >= 0.5, Jaccard index of the genes at ``padj < 0.05`` and of the GO terms kept by
ORA of the up-regulated genes (BH ``padj < 0.05``, and the paper's raw ``p < 0.01``); the term
Jaccard median is also given over the features where either engine keeps a term. pyDESeq2 takes
minutes per feature on a loaded machine: its fits (results table, dispersions, size factors) are
cached as ``<--cache>/<hash of the cells>.npz`` (default ``~/.cache/sclens-bench/deseq2``), and several
processes can fill the cache (``deseq2_tables(..., worker=(k, n))``). Stored in
``results/deseq2_agreement_<label>{,_features}.{json,md}``; an earlier engine is measured by running
this script with its ``src`` first on ``PYTHONPATH`` (``--label before``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/annotate.py [--n-cells 50000] [--deseq2 [--only-cached]]``
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from _results import save
from anndata import AnnData
from null_calibration import VARIANTS, patch
from scipy import sparse, stats

import sclens as sl
from sclens._stats import fdr_bh
from sclens.tl._annotation import _de_fast as fast
from sclens.tl._annotation import _engines
from sclens.tl._annotation._cellsets import annotated_features, cell_sets
from sclens.tl._annotation._dispersion import MIN_MU
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
    """Wall-clock seconds, process CPU seconds and traced peak memory (MiB) of ``fn()``."""
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return dt, cpu, peak


DEFAULT_VARIANT = (next(iter(VARIANTS)),)  # the default dispersion estimator
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


CACHE = Path.home() / ".cache" / "sclens-bench" / "deseq2"
REFERENCE_COLS = ("log2FoldChange", "stat", "pvalue", "padj", "baseMean")
REFERENCE_VARM = ("genewise_dispersions", "fitted_dispersions", "MAP_dispersions", "dispersions")


def agreement_sets(adata, feats):
    """The high / low cells of ``feats`` that both engines get (``AGREEMENT_KW``)."""
    acts, f = annotated_features(adata, key="sae", features=feats)
    sets = cell_sets(acts, f, low_quantile=None, mask=None, seed=0, **AGREEMENT_KW)
    return [(int(feat), sets.high[:, j].indices, sets.low[:, j].indices) for j, feat in enumerate(sets.features)]


def deseq2_cached(adata, hi, lo, cache=CACHE, *, compute=True, min_mu=MIN_MU):
    """pyDESeq2's fit of one contrast (results table columns, dispersions, size factors) from the cache or run now.

    Cached as ``<cache>/<sha1 of the dataset shape, pyDESeq2 version, high and low cells[, min_mu]>.npz``
    (``min_mu`` in the key only when it is not pyDESeq2's default 0.5); ``None`` when it is not cached and
    ``compute`` is false.
    """
    import pydeseq2

    from sclens.tl._annotation._de_deseq2 import deseq2_fit

    key = hashlib.sha1(np.concatenate([adata.shape, [-2], hi, [-1], lo]).astype(np.int64).tobytes())
    key.update(pydeseq2.__version__.encode())
    if min_mu != MIN_MU:
        key.update(f"min_mu={min_mu:g}".encode())
    path = Path(cache) / f"{key.hexdigest()}.npz"
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    if not compute:
        return None
    t0 = time.perf_counter()
    counts = np.rint(adata.layers["counts"][np.concatenate([hi, lo])].toarray()).astype(np.int64)
    ds = deseq2_fit(counts, hi.size, adata.var_names, min_mu=min_mu)
    table = ds.results_df.reindex(adata.var_names)
    out = {c: table[c].to_numpy(dtype=float) for c in REFERENCE_COLS}
    out |= {c: ds.dds.var[c].to_numpy(dtype=float) for c in REFERENCE_VARM}
    out["size_factors"] = np.asarray(ds.dds.obs["size_factors"], dtype=float)
    out["seconds"] = np.float64(time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.rename(path)
    print(f"pyDESeq2 on {hi.size} + {lo.size} cells: {out['seconds']:.0f} s", flush=True)
    return out


def deseq2_tables(adata, feats, cache=CACHE, *, only_cached=False, worker=(0, 1), min_mu=MIN_MU):
    """pyDESeq2's fits (:func:`deseq2_cached`) of ``feats``, by feature.

    ``only_cached``: leave out the features whose fit is not in the cache yet; ``worker=(k, n)``: run
    only every ``n``-th feature from the ``k``-th (to fill the cache in ``n`` processes).
    """
    out = {}
    for j, (feat, hi, lo) in enumerate(agreement_sets(adata, feats)):
        if j % worker[1] != worker[0]:
            continue
        fit = deseq2_cached(adata, hi, lo, cache, compute=not only_cached, min_mu=min_mu)
        if fit is not None:
            out[str(feat)] = fit
    return out


#: the annotation's default study-set rule, applied to both engines (``independent_filter``, ``max_de_genes``)
DEFAULTS = {k: inspect.signature(sl.tl.annotate_features).parameters[k].default
            for k in ("independent_filter", "max_de_genes")}  # fmt: skip


def as_result(fit):
    """A cached pyDESeq2 fit as a one-contrast ``DEResult`` with the default adjustment of ``de_method="deseq2"``.

    The cache holds pyDESeq2's independently filtered padj; without the filter (the default) padj is BH
    over the tested genes, as ``DeseqStats(independent_filter=False)`` computes it.
    """
    arrays = [fit[c][None] for c in REFERENCE_COLS]
    if DEFAULTS["independent_filter"]:
        arrays[3] = np.where(np.isfinite(arrays[2]) & np.isnan(arrays[3]), 1.0, arrays[3])
    else:
        arrays[3] = fdr_bh(arrays[2])
    return fast.DEResult(*arrays)


def kept_terms(de, gsm):
    """Kept terms of one contrast at the default rule (ORA of up genes, BH padj < 0.05) and the paper's raw p < 0.01."""
    study = up_genes(de, de_alpha=0.05, min_log2fc=1.0, max_genes=DEFAULTS["max_de_genes"])
    res = ora(study, de.tested, gsm, min_size=5, max_size=None)
    return {
        rule: set(np.flatnonzero(res[col][:, 0] < cut))
        for rule, col, cut in (("bh", "padj", 0.05), ("p", "pvalue", 0.01))
    }


TARGETS = {
    "Spearman all": 0.95,
    "Spearman base mean>=0.5": 0.98,
    "Jaccard padj<0.05": 0.8,
    "Jaccard terms BH<0.05": 0.8,
}


#: the summary's metrics as keys of the estimators' table (``deseq2_agreement_variants``)
SHORT = {
    "Spearman all": "spearman_all",
    "Spearman base mean>=0.5": "spearman_bm05",
    "Jaccard padj<0.05": "jaccard_genes",
    "Jaccard terms BH<0.05": "jaccard_terms",
    "Jaccard terms BH<0.05, features with terms": "jaccard_terms_with_terms",
    "Jaccard terms p<0.01": "jaccard_terms_p01",
}


def agreement(label, cache, *, only_cached=False, variants=DEFAULT_VARIANT, min_mu=MIN_MU):
    """Fast engine vs pyDESeq2 on real cells: the same high / low cells, ``return_de`` of both engines.

    The first of ``variants`` (dispersion estimators, :data:`null_calibration.VARIANTS`) is stored as
    ``deseq2_agreement_<label>``; with several, the medians of each are stored as ``deseq2_agreement_variants``.
    """
    adata = immune_sae()
    feats, local = pick_features(adata)
    go = sl.datasets.go_gene_sets("human")
    ref = deseq2_tables(adata, feats, cache, only_cached=only_cached, min_mu=min_mu)
    feats = [int(f) for f in ref]
    gsm = gene_set_matrix(go, adata.var_names)
    dataset = f"sl.datasets.immune559_counts() ({adata.n_obs} cells x {adata.n_vars} genes), fit_sae defaults on PCA"
    medians = []
    # one feature first: the kernels are compiled before the timed runs
    sl.tl.annotate_features(adata, gene_sets=go, layer="counts", features=feats[:1], key_added="fast",
                            **AGREEMENT_KW)  # fmt: skip
    for k, variant in enumerate(variants):
        original = _engines.nb_dispersions
        _engines.nb_dispersions, dispersions = patch(variant)
        try:
            cpu0, t0 = time.process_time(), time.perf_counter()
            sl.tl.annotate_features(adata, gene_sets=go, layer="counts", features=feats, return_de=feats,
                                    key_added="fast", dispersions=dispersions, **AGREEMENT_KW)  # fmt: skip
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            _engines.nb_dispersions = original
        per_feature, summary = agreement_table(adata, ref, gsm, local)
        medians.append({"dispersions": variant, **{SHORT[r["metric"]]: r["median"] for r in summary}, "cpu_s": cpu})
        print(medians[-1], flush=True)
        if k:
            continue
        params = {**AGREEMENT_KW, **DEFAULTS, "label": label, "dispersions": variant, "features": feats,
                  "reference_min_mu": min_mu,
                  "local": sorted(set(feats) & local), "fast_engine_seconds": round(seconds, 1),
                  "fast_engine_cpu_seconds": round(cpu, 1)}  # fmt: skip
        notes = (f"pyDESeq2 ({len(feats)} features, one run each, cached) vs the fast engine ({seconds:.1f} s wall, "
                 f"{cpu:.1f} s CPU for all features, DE + ORA) on the same high / low cells")  # fmt: skip
        save(f"deseq2_agreement_{label}", summary, dataset=dataset, params=params, notes=notes)
        save(f"deseq2_agreement_{label}_features", per_feature.to_dict("records"), dataset=dataset, params=params)
    if len(variants) > 1:
        params = {**AGREEMENT_KW, **DEFAULTS, "features": feats}
        notes = "median over the features of each metric, per dispersion estimator; cpu_s: DE + ORA of all features"
        save("deseq2_agreement_variants", medians, dataset=dataset, params=params, notes=notes)


def agreement_table(adata, ref, gsm, local):
    """Per-feature agreement of ``adata.uns["fast"]`` with pyDESeq2's fits ``ref``, and its summary rows."""
    rows = []
    for f, fit in ref.items():
        a = adata.uns["fast"]["de"][f].reindex(adata.var_names)
        de_a = fast.DEResult(
            *(a[c].to_numpy(dtype=float)[None] for c in ("log2fc", "stat", "pvalue", "padj", "base_mean"))
        )
        de_b = as_result(fit)
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
    with_terms = per_feature[(per_feature["terms fast"] > 0) | (per_feature["terms pyDESeq2"] > 0)]
    summary = [
        {"metric": c, "features": len(per_feature), "target": TARGETS.get(c, ""),
         "median": float(per_feature[c].median()), "min": float(per_feature[c].min())}
        for c in per_feature.columns if c.startswith(("Spearman", "Jaccard"))
    ]  # fmt: skip
    summary.insert(4, {
        "metric": "Jaccard terms BH<0.05, features with terms", "features": len(with_terms), "target": 0.8,
        "median": float(with_terms["Jaccard terms BH<0.05"].median()),
        "min": float(with_terms["Jaccard terms BH<0.05"].min()),
    })  # fmt: skip
    return per_feature, summary


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
        load0 = os.getloadavg()[0]
        dt, cpu, peak = timed(lambda f=feats: sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", features=f))
        rows.append({"engine": "fast", "cells": n_cells, "features": n_feat, "total_s": dt, "cpu_s": cpu,
                     "s_per_feature": dt / n_feat, "peak_traced_MiB": peak,
                     "load_before": load0, "load_after": os.getloadavg()[0]})  # fmt: skip
    top = adata.uns["sae_go"]["results"].groupby("feature")["term"].first()
    recovered = np.mean([top.get(f) == f"program_{prog_of[f]:03d}" for f in range(1000)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    notes = (f"whole annotate_features (DE, ORA over {gs['source'].nunique()} gene sets, term clusters); cpu_s: "
             f"process CPU time; peak RSS {peak:.0f} MiB; planted program is the top term for {recovered:.1%} of "
             "1,000 features")  # fmt: skip
    dataset = f"simulated NB counts, {n_cells} cells x {n_genes} genes, 100 planted programs"
    save("annotate_speed", rows, dataset=dataset, params={"n_cells": n_cells, "n_genes": n_genes}, notes=notes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-cells", type=int, default=50_000)
    ap.add_argument("--n-genes", type=int, default=2_000)
    ap.add_argument("--deseq2", action="store_true", help="agreement with pyDESeq2 on real cells (immune559)")
    ap.add_argument("--skip-speed", action="store_true", help="only the agreement")
    ap.add_argument("--label", default="after", help="name of the agreement's results file")
    ap.add_argument("--cache", default=str(CACHE), help="folder of pyDESeq2's fits (one .npz per contrast)")
    ap.add_argument("--only-cached", action="store_true", help="only the features pyDESeq2 has already run on")
    ap.add_argument(
        "--reference-min-mu",
        type=float,
        default=MIN_MU,
        help="pyDESeq2's min_mu for the reference fits (0.5: its default; DESeq2 advises 1e-6 for single cells)",
    )
    ap.add_argument("--dispersions", nargs="+", default=[next(iter(VARIANTS))], choices=list(VARIANTS),
                    help="dispersion estimators of the agreement (the first is stored under --label)")  # fmt: skip
    args = ap.parse_args()
    if not args.skip_speed:
        speed(args.n_cells, args.n_genes)
    if args.deseq2:
        agreement(
            args.label,
            args.cache,
            only_cached=args.only_cached,
            variants=args.dispersions,
            min_mu=args.reference_min_mu,
        )


if __name__ == "__main__":
    main()

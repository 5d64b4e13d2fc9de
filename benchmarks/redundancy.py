"""Benchmark of the term clustering that ends every annotation (``cluster_terms``): old vs new.

Input: GO BP from the embedded snapshot (``sl.datasets.go_gene_sets("human", namespaces=["BP"])``),
all its genes as ``var_names``; per feature, the ``n_terms`` (Poisson around ``--terms``, some 0 or 1)
GO terms that overlap most with a random 25-gene program drawn from one GO term, ordered like
p-values -- a stand-in for the kept terms of an ORA (overlapping, nested terms, like real hits).
The old implementation is ``tests/redundancy_reference.py``; both results must be identical.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/redundancy.py [--features 2500 --terms 50]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sclens as sl
from sclens.tl._enrich import gene_set_matrix
from sclens.tl._redundancy import cluster_terms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from redundancy_reference import cluster_terms_reference


def kept_terms(gs, n_features: int, n_terms: float, seed: int = 0) -> pd.DataFrame:
    """Per feature the terms that overlap most with a random program (a stand-in for ORA hits)."""
    rng = np.random.default_rng(seed)
    mat = gs.matrix.tocsr()
    progs = np.zeros((n_features, mat.shape[1]))
    for f, t in enumerate(rng.integers(0, mat.shape[0], n_features)):
        genes = mat[t].indices
        progs[f, rng.choice(genes, min(25, genes.size), replace=False)] = 1.0
    overlap = np.asarray((mat @ progs.T).T)  # features x terms
    rows = []
    for f in range(n_features):
        k = min(int(rng.poisson(n_terms)) if rng.random() > 0.05 else int(rng.integers(0, 2)), mat.shape[0])
        score = overlap[f] + rng.random(mat.shape[0]) * 0.5  # random order among equal overlaps
        top = np.argsort(-score, kind="stable")[:k]
        rows += [(f, gs.terms["term"].iloc[t], i * 1e-6) for i, t in enumerate(top)]
    return pd.DataFrame(rows, columns=["feature", "term", "pvalue"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=2500)
    parser.add_argument("--terms", type=float, default=50.0)
    parser.add_argument("--min-similarity", type=float, default=0.2)
    parser.add_argument("--skip-old", action="store_true", help="time only the new implementation")
    args = parser.parse_args()
    net = sl.datasets.go_gene_sets("human", namespaces=["BP"])
    gs = gene_set_matrix(net, pd.Index(net["target"].unique()))
    results = kept_terms(gs, args.features, args.terms)
    terms = pd.Index(gs.terms["term"].astype(str))
    shape = f"{len(terms)} GO BP terms x {gs.matrix.shape[1]} genes"
    print(f"{args.features} features, {len(results)} kept terms ({shape}); OMP threads as set")
    timings, outs = {}, {}
    impls = {"new (first call)": cluster_terms, "new": cluster_terms}  # the first loads numba and its kernel
    if not args.skip_old:
        impls = {"old": cluster_terms_reference, **impls}
    for name, fn in impls.items():
        start = time.perf_counter()
        outs[name] = fn(results, gs.matrix, terms, gs.ic, min_similarity=args.min_similarity)
        timings[name] = time.perf_counter() - start
    print(f"{'implementation':<20}{'seconds':>10}")
    for name, sec in timings.items():
        print(f"{name:<20}{sec:>10.2f}")
    if "old" in outs:
        same = all(outs["old"].equals(outs[name]) for name in ("new (first call)", "new"))
        print(f"speed-up {timings['old'] / timings['new']:.1f}x; identical results (every column): {same}")
        print(f"clusters per feature (median): {outs['new'].groupby('feature')['term_cluster'].max().median() + 1:.0f}")


if __name__ == "__main__":
    main()

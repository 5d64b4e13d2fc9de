"""Annotation rate of features independent of expression, at default thresholds (issue 11, item 2).

Toy data (``sl.datasets.toy``: 2,000 cells x 1,000 genes, 16 programs of 15 genes, 40 decoy sets)
with 16 planted features (the true program codes) and ``--n-null`` features per seed whose
activations are drawn independently of expression (active in 5-40 % of cells, Gamma(2, 1)
values), annotated by ``sl.tl.annotate_features`` at its defaults. Reported per dispersion
estimator of the fast engine (:data:`VARIANTS`, per-contrast dispersions, issue 20): the fraction of null features
with at least one kept term (with its binomial standard error and exact 95 % upper bound), the
fraction of planted features annotated,
and the calibration of the per-gene Wald test on the null features (fraction of genes at
``p < 0.05``, program genes vs the others; 0.05 if calibrated).

Run: ``OMP_NUM_THREADS=1 python benchmarks/null_calibration.py [--seeds 3] [--n-null 80]``; the table is
stored in ``benchmarks/results/null_calibration.json`` (and ``.md``), one row per dispersion estimator (the
default first): rates as fractions, counts as integers.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from _results import save
from scipy import sparse, stats

import sclens as sl
from sclens.tl._annotation import _engines
from sclens.tl._annotation._dispersion import (
    SC_MIN_MU,
    moment_dispersions,
    nb_dispersions,
    pydeseq2_dispersions,
    shrunk_moment_dispersions,
)


def _pydeseq2_step(pick):
    def disp(high, low, centres, hist):
        return pick(pydeseq2_dispersions(high, low, centres, hist))

    return disp


#: dispersion estimators compared (the default first): the library's two (``annotate_features(dispersions=)``) and
#: variants of pyDESeq2's steps
VARIANTS = {
    "moments, MAP weight (default)": functools.partial(nb_dispersions, estimator="moments"),
    "floored": functools.partial(nb_dispersions, estimator="floored"),
    "pyDESeq2": functools.partial(nb_dispersions, estimator="pydeseq2"),
    "gene-wise MLE": _pydeseq2_step(lambda d: d["genewise"]),
    "max(MLE, MAP)": _pydeseq2_step(lambda d: np.fmax(d["genewise"], d["final"])),
    "outliers at 1 MAD": _pydeseq2_step(
        lambda d: np.where(np.log(d["genewise"]) > np.log(d["trend"]) + d["mad"], d["genewise"], d["map"])
    ),
    "floored, min_mu 0.5": lambda high, low, centres, hist: pydeseq2_dispersions(
        high, low, centres, hist, floor=moment_dispersions(high, low)
    )["final"],
    "shrunk-moment floor, min_mu 0.5": lambda high, low, centres, hist: pydeseq2_dispersions(
        high, low, centres, hist, floor=shrunk_moment_dispersions(high, low, centres)
    )["final"],
    "pyDESeq2, min_mu 1e-6": lambda high, low, centres, hist: pydeseq2_dispersions(
        high, low, centres, hist, min_mu=SC_MIN_MU
    )["final"],
}


def planted_and_null(seed: int, n_null: int):
    adata = sl.datasets.toy(n_cells=2000, n_genes=1000, genes_per_program=15, n_decoy_sets=40, random_state=seed)
    rng = np.random.default_rng(100 + seed)
    freq = rng.uniform(0.05, 0.4, n_null)
    rand = np.where(rng.random((adata.n_obs, n_null)) < freq, rng.gamma(2, 1, (adata.n_obs, n_null)), 0)
    codes = adata.obsm["X_codes"]
    acts = sparse.hstack([sparse.csr_matrix(codes), sparse.csr_matrix(rand)]).tocsr().astype(np.float32)
    adata.obsm["X_sae"] = acts
    table = pd.DataFrame({"kind": "live"}, index=[str(i) for i in range(acts.shape[1])])
    adata.uns["sae"] = {"params": {"architecture": "planted"}, "features": table, "run_id": "r0"}
    return adata, codes.shape[1]


def patch(variant: str) -> tuple[Callable, str]:
    """The engine's ``nb_dispersions`` replaced by ``VARIANTS[variant]``, and the ``dispersions`` argument that runs it.

    Every variant but the moments needs the count histogram, which the engine builds for ``dispersions="floored"``.
    """
    fn = VARIANTS[variant]
    return (lambda high, low, centres, hist, estimator=None: fn(high, low, centres, hist)), (
        "moments" if variant.startswith("moments") else "floored"
    )


def measure(seeds: int, n_null: int, variant: str) -> dict:
    original = _engines.nb_dispersions
    _engines.nb_dispersions, dispersions = patch(variant)
    planted, null, p_prog, p_other, seconds = [], [], [], [], 0.0
    try:
        for seed in range(seeds):
            adata, n_planted = planted_and_null(seed, n_null)
            n_feat = adata.obsm["X_sae"].shape[1]
            gs = adata.uns["toy"]["gene_sets"]
            t0 = time.process_time()
            nulls = list(range(n_planted, n_feat))
            sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", return_de=nulls, dispersions=dispersions)
            seconds += time.process_time() - t0
            n_terms = adata.uns["sae"]["features"]["n_terms"].to_numpy()
            planted.append(n_terms[:n_planted] > 0)
            null.append(n_terms[n_planted:] > 0)
            program = adata.var_names.isin(gs.loc[gs["source"].str.startswith("program"), "target"])
            for f in nulls:
                p = adata.uns["sae_go"]["de"][str(f)]["pvalue"].to_numpy()
                p_prog.append(np.nanmean(p[program] < 0.05))
                p_other.append(np.nanmean(p[~program] < 0.05))
    finally:
        _engines.nb_dispersions = original
    null, planted = np.concatenate(null), np.concatenate(planted)
    rate, k = float(null.mean()), int(null.sum())
    return {
        "dispersions": variant,
        "null_annotated": k,
        "n_null": int(null.size),
        "null_rate": rate,
        "null_se": float(np.sqrt(rate * (1 - rate) / null.size)),
        "null_upper95": float(stats.beta.ppf(0.975, k + 1, null.size - k)),  # Clopper-Pearson
        "planted_annotated": int(planted.sum()),
        "n_planted": int(planted.size),
        "p05_program_genes": float(np.mean(p_prog)),
        "p05_other_genes": float(np.mean(p_other)),
        "annotate_cpu_s_per_seed": seconds / seeds,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-null", type=int, default=80, help="null features per seed")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--label", default="null_calibration", help="name of the stored table (one run of some variants)")
    args = ap.parse_args()
    rows = []
    for v in args.variants:
        rows.append(measure(args.seeds, args.n_null, v))
        print(rows[-1], flush=True)
    dataset = (
        "sl.datasets.toy(n_cells=2000, n_genes=1000, genes_per_program=15, n_decoy_sets=40), seeds "
        f"0-{args.seeds - 1}: 16 planted program codes + {args.n_null} null features per seed"
    )
    notes = "per-contrast dispersions (issue 20), one row per estimator"
    save(args.label, rows, dataset=dataset, params=vars(args), notes=notes)


if __name__ == "__main__":
    main()

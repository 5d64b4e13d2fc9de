"""CPU cost per feature of ``go_algorithm="elim"`` against ``"classic"`` in ``annotate_features``.

Inputs of ``benchmarks/scfeaturelens_cost.py`` (``make_inputs``: 10,000 synthetic cells x 13,431 genes
named by GO symbols, 30 planted features of 567 high cells, <= 1,000 low cells), annotated with its
930 GO BP gene sets and with all GO BP sets of the embedded snapshot (whose graph elim walks).
Each setting runs once untimed (numba compiles on first use), then ``--repeats`` times timed
end to end; the table gives the median CPU (process) seconds per feature, the share of that spent
in the ORA (``ora``: the hypergeometric tests, and for elim the re-tests along the graph), and the
number of kept terms per feature. Stored through ``benchmarks/_results.py``
(``benchmarks/results/go_algorithm_cost.{json,md}``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/go_algorithm_cost.py``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _results import save
from scfeaturelens_cost import N_FEATURES, make_inputs

import sclens as sl
from sclens.tl._annotation import _engines


def timed_ora():
    """Wrap the ``ora`` that the ORA enrichment (``_engines.ORA``) calls, adding up its CPU seconds."""
    spent = [0.0]
    inner = _engines.ora

    def ora(*args, **kwargs):
        c0 = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - c0

    return ora, spent, inner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    adata, subset = make_inputs()
    full = sl.datasets.go_gene_sets("human", namespaces=("BP",))
    rows = []
    for sets_name, gs in (("930 GO BP sets", subset), ("all GO BP sets", full)):
        n_sets = gs["source"].nunique()
        for algo in ("classic", "elim"):
            kw = {"gene_sets": gs, "high_quantile": 0.9, "go_algorithm": algo, "key_added": "go"}
            sl.tl.annotate_features(adata, **kw)  # untimed: numba compiles, the GO graph is loaded once
            cpu, ora_cpu = [], []
            for _ in range(args.repeats):
                wrapped, spent, inner = timed_ora()
                _engines.ora = wrapped
                try:
                    c0 = time.process_time()
                    sl.tl.annotate_features(adata, **kw)
                    cpu.append((time.process_time() - c0) / N_FEATURES)
                finally:
                    _engines.ora = inner
                ora_cpu.append(spent[0] / N_FEATURES)
            kept = adata.uns["go"]["results"].groupby("feature").size()
            rows.append({
                "gene sets": f"{sets_name} ({n_sets})", "go_algorithm": algo,
                "CPU s per feature": round(float(np.median(cpu)), 4),
                "ORA CPU s per feature": round(float(np.median(ora_cpu)), 4),
                "median kept terms": float(kept.median()) if len(kept) else 0.0,
            })  # fmt: skip
            print(rows[-1], flush=True)
    dataset = (f"{adata.n_obs:,} cells x {adata.n_vars:,} genes (benchmarks/scfeaturelens_cost.py inputs), "
               f"{N_FEATURES} features, median of {args.repeats} timed runs")  # fmt: skip
    save("go_algorithm_cost", rows, dataset=dataset, params=vars(args))


if __name__ == "__main__":
    main()

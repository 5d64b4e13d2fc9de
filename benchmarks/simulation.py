"""The paper's large simulation end to end: simulate, autoencoder, SAE, recovery, connectivity.

Prints the wall time of every step and the recovery tables (the paper's Figure 1C, Table S5 and
the pseudo-connectivity test of section 4.3). ``ceiling_r`` (mean sqrt(R^2) of the linear fit from
the embedding) is roughly the best |r| any single SAE feature can reach: at the defaults the
50-dimensional embedding of 100 programs holds X'' to R^2 ~0.84, so X'' recovery stays below 0.9
whatever the SAE (see the simulation tutorial, section 7).

The paper used 100,000 cells x 20,000 genes (``--n-cells 100000 --n-genes 20000``, hours on a
GPU); the default here, 20,000 cells x 2,000 genes with a 100-feature SAE (one per program; wider
SAEs split programs by cell type and recover less, see the tutorial), takes about 7 minutes on one
CPU core::

    python benchmarks/simulation.py
    python benchmarks/simulation.py --n-cells 100000 --n-genes 20000 --device cuda
    python benchmarks/simulation.py --n-cell-types 0 --mask-density 0.1   # sparser, easier X''
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import pandas as pd
import torch

import sclens as sl

TIMES: dict[str, float] = {}


@contextmanager
def step(name: str):
    start = time.perf_counter()
    print(f"-> {name} ...", flush=True)
    yield
    TIMES[name] = time.perf_counter() - start
    print(f"   {name}: {TIMES[name]:.1f} s", flush=True)


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-cells", type=int, default=20_000)
    p.add_argument("--n-genes", type=int, default=2_000)
    p.add_argument("--n-programs", type=int, default=100)
    p.add_argument("--n-cell-types", type=int, default=40, help="0: accessibility mask drawn per cell")
    p.add_argument("--mask-density", type=float, default=0.3)
    p.add_argument("--likelihood", default="deterministic", choices=["deterministic", "poisson", "nb"])
    p.add_argument("--n-latent", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="*", default=[256])
    p.add_argument("--ae-epochs", type=int, default=15)
    p.add_argument("--sae-features", type=int, default=100)
    p.add_argument("--architecture", default="topk")
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--l1-weight", type=float, default=1e-3)
    p.add_argument("--sae-epochs", type=int, default=None, help="default: fit_sae's (train to convergence)")
    p.add_argument("--sae-lr", type=float, default=None, help="default: fit_sae's learning-rate rule")
    p.add_argument("--n-components", type=int, default=150, help="PCA / ICA / SVD components (paper: 150)")
    p.add_argument("--max-cells", type=int, default=10_000, help="cells used for the correlation metrics")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch / BLAS threads and sl.settings.n_jobs (0: library defaults; sclens fits then use 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = _parse_args()
    if args.threads:  # on shared cores, oversubscribed BLAS / torch threads can be 10x slower
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)
        sl.settings.n_jobs = args.threads  # fit_sae / fit_autoencoder set torch threads from it
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)

    with step("simulate"):
        adata = sl.sim.simulate(
            preset="large",
            n_cells=args.n_cells,
            n_genes=args.n_genes,
            n_programs=args.n_programs,
            n_cell_types=args.n_cell_types,
            mask_density=args.mask_density,
            likelihood=args.likelihood,
            random_state=args.seed,
        )
    print(adata)
    with step("autoencoder"):
        sl.sim.fit_autoencoder(
            adata,
            n_latent=args.n_latent,
            hidden=tuple(args.hidden),
            n_epochs=args.ae_epochs,
            batch_size=256,
            device=args.device,
            random_state=args.seed,
        )
    val = adata.uns["ae"]["metrics"]["val_loss"]
    print(f"   AE validation loss: {val[0]:.3f} (epoch 1) -> {val[-1]:.3f} (epoch {val.size})")
    with step("superposition_fit"):
        r2 = sl.sim.superposition_fit(adata, use_rep="X_ae", max_cells=args.max_cells, random_state=args.seed)
    print("\nSuperposition fit (held-out R^2 of a linear regression from the AE embedding):")
    summary = r2.groupby("family", observed=True)["r2"].describe()[["mean", "50%", "min", "max"]]
    # a feature is a thresholded linear read-out of the embedding: sqrt(R^2) roughly caps its best |r|
    summary["ceiling_r"] = r2.assign(c=r2["r2"].clip(0, 1) ** 0.5).groupby("family", observed=True)["c"].mean()
    print(summary.round(3))
    with step("fit_sae"):
        sl.tl.fit_sae(
            adata,
            use_rep="X_ae",
            n_features=args.sae_features,
            architecture=args.architecture,
            k=args.k,
            l1_weight=args.l1_weight,
            lr=args.sae_lr,
            n_epochs=args.sae_epochs,
            device=args.device,
            random_state=args.seed,
        )
    m = adata.uns["sae"]["metrics"]
    print(
        f"   SAE: fvu {float(m['fvu']):.3f}, l0 {float(m['l0']):.1f}, live {int(m['n_live'])}, "
        f"dead fraction {float(m['dead_fraction']):.3f}"
    )
    with step("recovery (SAE + PCA/ICA/SVD)"):
        rec = sl.sim.recovery(
            adata,
            threshold=args.threshold,
            n_components=args.n_components,
            max_cells=args.max_cells,
            random_state=args.seed,
        )
    print(f"\nRecovery (best |Pearson r| per hidden variable; recovered: best |r| > {args.threshold}):")
    cols = [
        "method",
        "family",
        "n_variables",
        "mean_best_r",
        "median_best_r",
        "frac_recovered",
        "features_per_variable",
        "redundancy",
        "l0",
        "n_live",
    ]
    print(rec[cols].round(3).to_string(index=False))
    with step("connectivity_recovery"):
        conn = sl.sim.connectivity_recovery(adata, max_cells=args.max_cells, random_state=args.seed)
    print("\nPseudo-connectivity vs M (recall of each feature's best X'' row of M; shuffled M = chance):")
    print(conn.round(3).to_string(index=False))
    print("\nWall time per step:")
    for name, sec in TIMES.items():
        print(f"  {name:<32s} {sec:8.1f} s")
    print(f"  {'total':<32s} {sum(TIMES.values()):8.1f} s")


if __name__ == "__main__":
    main()

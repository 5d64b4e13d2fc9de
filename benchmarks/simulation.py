"""The paper's large simulation end to end: simulate, autoencoder, SAE, recovery, connectivity.

Prints the wall time of every step and the recovery tables (the paper's Figure 1C, Table S5 and
the pseudo-connectivity test of section 4.3). ``ceiling_r`` (mean sqrt(R^2) of the linear fit from
the embedding) is roughly the best |r| any single SAE feature can reach: at the defaults the
50-dimensional embedding of 100 programs holds X'' to R^2 ~0.84, so X'' recovery stays below 0.9
whatever the SAE (see the simulation tutorial, section 7).

The paper used 100,000 cells x 20,000 genes (``--n-cells 100000 --n-genes 20000``, hours on a
GPU); the default here, 20,000 cells x 2,000 genes with a 100-feature SAE (one per program) and
``k=30`` (about the programs on per cell), takes about 7 minutes on one CPU core. The sweep
(``benchmarks/results/simulation_sweep.md``, quoted in docs/choosing_an_sae.md) supports it: smaller
``k`` recovers X'' worse at this scale (mean best |r| 0.32 at ``k=4``, 0.38 at ``k=8``, 0.43 at
``k=30``), ``k=45`` and 200 features gain at most 0.03::

    python benchmarks/simulation.py
    python benchmarks/simulation.py --n-cells 100000 --n-genes 20000 --device cuda
    python benchmarks/simulation.py --n-cell-types 0 --mask-density 0.1   # sparser, easier X''
    python benchmarks/simulation.py --sweep   # SAE width x k on the same embedding, stored as results

``--sweep`` trains one SAE per (``--sweep-width``, ``--sweep-k``) pair on the autoencoder's embedding
(``sl.sim.sweep``) after the superposition fit, and stores every row with the X'' ceiling through
``benchmarks/_results.py`` (``benchmarks/results/simulation_sweep.json`` / ``.md``), rewritten after
each pair; the single SAE, recovery and connectivity steps are then skipped. ``--resume`` keeps the
stored rows measured on the same data and trains only the missing pairs::

    python benchmarks/simulation.py --sweep --resume --sweep-k 4   # add k=4 to the stored pairs
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from _results import RESULTS, load, save

import sclens as sl

TIMES: dict[str, float] = {}


@contextmanager
def step(name: str):
    start = time.perf_counter()
    print(f"-> {name} ...", flush=True)
    yield
    TIMES[name] = time.perf_counter() - start
    print(f"   {name}: {TIMES[name]:.1f} s", flush=True)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument("--sweep", action="store_true", help="sweep SAE width x k instead of one SAE")
    p.add_argument("--sweep-width", type=int, nargs="+", default=[100, 200])
    p.add_argument("--sweep-k", type=int, nargs="+", default=[4, 8, 30, 45])
    p.add_argument("--results", type=Path, default=None, help="where --sweep stores (default: benchmarks/results)")
    p.add_argument("--resume", action="store_true", help="--sweep: keep the stored pairs of the same data")
    return p.parse_args(argv)


def sweep(adata, args: argparse.Namespace, ceiling: float) -> pd.DataFrame:
    """One SAE per (width, k) on the embedding, X'' recovery next to the linear ceiling, stored after each."""
    directory = args.results or RESULTS
    rows = _stored_rows(args, directory) if args.resume else []
    done = {(r["n_features"], r["k"]) for r in rows}
    pairs = [(w, k) for w in args.sweep_width for k in args.sweep_k if k < w]
    for width, k in [p for p in pairs if p not in done]:
        start = time.perf_counter()
        table = sl.sim.sweep(adata, use_rep="X_ae", grid={"n_features": [width], "k": [k]}, targets=("X''",),
                             threshold=args.threshold, max_cells=args.max_cells, random_state=args.seed,
                             architecture=args.architecture, l1_weight=args.l1_weight, lr=args.sae_lr,
                             n_epochs=args.sae_epochs, device=args.device)  # fmt: skip
        row = table.iloc[0]
        rows.append({
            "n_features": width, "k": k, "fvu": float(row["fvu"]), "l0": float(row["l0"]),
            "n_live": int(row["n_live"]), "mean_best_r": float(row["mean_best_r"]),
            "median_best_r": float(row["median_best_r"]), "frac_recovered": float(row["frac_recovered"]),
            "ceiling_r": ceiling, "seconds": round(time.perf_counter() - start, 1),
        })  # fmt: skip
        dataset = (f"sl.sim.simulate(large preset, {args.n_cells} cells, {args.n_genes} genes, {args.n_programs} "
                   f"programs, {args.n_cell_types} cell types, mask density {args.mask_density}), {args.n_latent}-dim "
                   f"autoencoder ({args.ae_epochs} epochs)")  # fmt: skip
        notes = f"{len(rows)} settings; recovery on {args.max_cells} cells; {args.architecture}"
        save("simulation_sweep", rows, dataset=dataset, params=vars(args), notes=notes, directory=directory)
    return pd.DataFrame(rows)


# the arguments that make the data, the embedding and the scoring: stored rows are kept only when they match
DATA_ARGS = ("n_cells", "n_genes", "n_programs", "n_cell_types", "mask_density", "likelihood", "n_latent",
             "hidden", "ae_epochs", "architecture", "l1_weight", "sae_epochs", "sae_lr", "max_cells", "threshold",
             "seed")  # fmt: skip


def _stored_rows(args: argparse.Namespace, directory: Path) -> list[dict]:
    """The rows of the stored sweep when it was measured with the same data arguments, else none."""
    path = directory / "simulation_sweep.json"
    if not path.is_file():
        return []
    stored = load("simulation_sweep", directory=directory)
    differ = [a for a in DATA_ARGS if stored["params"].get(a) != vars(args)[a]]
    if differ:
        msg = f"--resume: the stored sweep was measured with other {', '.join(differ)}; rerun without it"
        raise SystemExit(msg)
    return stored["rows"]


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    args = _parse_args(argv)
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
    ceiling = float(summary.loc["X''", "ceiling_r"])
    print(f"\nX'' ceiling: mean best |r| of a linear map from the embedding (sqrt of held-out R^2) = {ceiling:.3f}")
    if args.sweep:
        with step("sweep"):
            return sweep(adata, args, ceiling)
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
    return None


if __name__ == "__main__":
    main()

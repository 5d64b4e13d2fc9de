"""Benchmark SAE training speed and memory: ``python benchmarks/fit_sae.py [--quick]``.

Each configuration runs in its own process (so peak RSS is its own) on a synthetic embedding
made from a planted sparse dictionary, and prints one table row: seconds per epoch, cells/s,
peak RSS, RSS before training ("base": imports + data), final FVU, mean L0 and dead
fraction (measured on all cells after training).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

ARCHS = ("topk", "batchtopk", "relu", "vanilla")


def make_data(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n_atoms = 4 * d
    atoms = rng.normal(size=(n_atoms, d)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    x = np.zeros((n, d), dtype=np.float32)
    for s in range(0, n, 10_000):  # 5 active atoms per cell, built in blocks
        m = min(10_000, n - s)
        idx = rng.integers(0, n_atoms, size=(m, 5))
        coef = rng.gamma(2.0, 0.5, size=(m, 5)).astype(np.float32)
        x[s : s + m] = np.einsum("mk,mkd->md", coef, atoms[idx])
    return x + 0.05 * rng.normal(size=x.shape).astype(np.float32)


def run_one(cfg: dict) -> dict:
    import lightning.fabric  # noqa: F401  (import time is not training time)
    import torch

    from sclens.sae import SAEConfig, SparseAutoencoder, evaluate, torch_threads, train_sae

    x = make_data(cfg["n"], cfg["d"])
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch_threads(cfg["threads"]):
        sae = SparseAutoencoder(
            SAEConfig(input_dim=cfg["d"], n_features=cfg["F"], architecture=cfg["arch"], k=cfg["k"], l1_weight=1e-2),
            seed=0,
        )
        marks = [time.perf_counter()]
        train_sae(sae, x, n_epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=1e-3, show_progress=False,
                  callback=lambda *_: marks.append(time.perf_counter()))  # fmt: skip
        ev = evaluate(sae, x, batch_size=4096)
    sec = (marks[-1] - marks[0]) / cfg["epochs"]
    torch.set_num_threads(1)
    return {
        **cfg,
        "s_per_epoch": sec,
        "cells_per_s": cfg["n"] / sec,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data_rss_mb": rss_data,
        "fvu": ev.fvu,
        "l0": ev.l0,
        "dead": ev.dead_fraction,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20k cells, 20 dims, topk/batchtopk only")
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.quick:
        grid = [(20, 4096, a) for a in ("topk", "batchtopk")]
        n = 20_000
    else:
        grid = [(20, f, a) for f in (4096, 10_000) for a in ARCHS] + [(512, 4096, a) for a in ARCHS]
        n = args.cells
    cols = ("dims", "features", "arch", "s/epoch", "cells/s", "peak MB", "base MB", "FVU", "L0", "dead")
    head = " ".join(f"{c:>{w}}" for c, w in zip(cols, (5, 8, 10, 8, 9, 8, 8, 6, 7, 6), strict=True))
    print(f"# {n} cells, batch {args.batch_size}, k={args.k}, {args.epochs} epoch(s), {args.threads} torch thread(s)")
    print(head)
    print("-" * len(head))
    for d, f, arch in grid:
        cfg = {"n": n, "d": d, "F": f, "arch": arch, "k": args.k, "epochs": args.epochs,
               "batch_size": args.batch_size, "threads": args.threads}  # fmt: skip
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True)
        if out.returncode:
            print(f"{d:>5} {f:>8} {arch:>10} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{d:>5} {f:>8} {arch:>10} {r['s_per_epoch']:>8.2f} {r['cells_per_s']:>9.0f} {r['peak_rss_mb']:>8.0f} "
            f"{r['data_rss_mb']:>8.0f} {r['fvu']:>6.3f} {r['l0']:>7.1f} {r['dead']:>6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

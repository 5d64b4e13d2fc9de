"""Benchmark SAE training speed and memory: ``python benchmarks/fit_sae.py [--quick | --memory]``.

Each configuration runs in its own process (so peak RSS is its own) on a synthetic embedding
made from a planted sparse dictionary, and prints one table row: seconds per epoch, cells/s,
peak RSS, RSS before training ("base": imports + data), final FVU, mean L0 and dead
fraction (measured on all cells after training).

``--memory`` checks that training memory grows with the batch size, not with the data size:
the embedding is written to an HDF5 file in a temporary directory (so it is never resident
as a whole), and each process reports the peak RSS increase of one ``train_sae`` epoch
(data statistics + one pass) over the RSS just before it, for a few batch sizes at fixed data
size and a few data sizes at fixed batch size. Linux only (``/proc/self/status``).

Every mode stores its table through ``benchmarks/_results.py``: ``benchmarks/results/fit_sae.json``
(``fit_sae_quick`` with ``--quick``), ``fit_sae_overhead``, ``fit_sae_recovery`` and ``fit_sae_memory``
(each also as ``.md``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _results import save

ARCHS = ("topk", "batchtopk", "relu", "vanilla")


def make_data(
    n: int, d: int, seed: int = 0, *, n_atoms: int | None = None, active: int = 5, return_atoms: bool = False
):
    """Cells as gamma-weighted sums of ``active`` of ``n_atoms`` (default ``4 d``) random unit atoms, plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_atoms = 4 * d if n_atoms is None else n_atoms
    atoms = rng.normal(size=(n_atoms, d)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    x = np.zeros((n, d), dtype=np.float32)
    for s in range(0, n, 10_000):  # `active` distinct atoms per cell, built in blocks
        m = min(10_000, n - s)
        idx = np.argsort(rng.random((m, n_atoms)), axis=1)[:, :active]
        coef = rng.gamma(2.0, 0.5, size=(m, active)).astype(np.float32)
        x[s : s + m] = np.einsum("mk,mkd->md", coef, atoms[idx])
    x += 0.05 * rng.normal(size=x.shape).astype(np.float32)
    return (x, atoms) if return_atoms else x


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


def plain_loop(model, x, *, batch_size: int, n_epochs: int, lr: float = 1e-3, device: str = "cpu",
               tuned: bool = False) -> float:  # fmt: skip
    """Seconds per epoch of a bare PyTorch loop over the same model (forward, backward, Adam, decoder norm).

    No trainer, no metrics, no dead-feature book-keeping: the floor that ``train_sae`` is compared to.
    ``tuned`` uses ``train_sae``'s own optimizer settings (fused Adam, tiny Adam moments zeroed every
    100 steps so they never become denormal), so that the difference to ``train_sae`` is the trainer's
    book-keeping alone.
    """
    import torch

    from sclens.sae._train import _SWEEP_EVERY, _adam, _zero_tiny_moments_

    xt = torch.as_tensor(x, device=device)
    model.to(device).train()
    opt = _adam(model.parameters(), lr) if tuned else torch.optim.Adam(model.parameters(), lr=lr)
    marks, step = [], 0
    for _ in range(n_epochs + 1):  # the first epoch is a warm-up
        marks.append(time.perf_counter())
        for idx in torch.randperm(len(xt), device=device).split(batch_size):
            out = model(xt[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            model.remove_parallel_grads_()
            opt.step()
            model.normalize_decoder_()
            step += 1
            if tuned and step % _SWEEP_EVERY == 0:
                _zero_tiny_moments_(opt)
        if device != "cpu":
            torch.cuda.synchronize()
    marks.append(time.perf_counter())
    return (marks[-1] - marks[1]) / n_epochs


def run_overhead(cfg: dict) -> dict:
    """``train_sae`` vs :func:`plain_loop` (plain and tuned), same architecture, data, batch size and epochs.

    The three alternate ``cfg["repeats"]`` times in one process (each after its own warm-up epoch),
    so that load from other processes hits them alike; the seconds per epoch of every run are returned.
    """
    import lightning.fabric  # noqa: F401

    from sclens.sae import SAEConfig, SparseAutoencoder, torch_threads, train_sae

    x = make_data(cfg["n"], cfg["d"])

    def model():
        c = SAEConfig(input_dim=cfg["d"], n_features=cfg["F"], architecture=cfg["arch"], k=cfg["k"])
        return SparseAutoencoder(c, seed=0)

    runs: dict[str, list[float]] = {"plain": [], "tuned": [], "sclens": []}
    with torch_threads(cfg["threads"]):
        for _ in range(cfg["repeats"]):
            runs["plain"].append(plain_loop(model(), x, batch_size=cfg["batch_size"], n_epochs=cfg["epochs"]))
            marks: list[float] = []
            train_sae(model(), x, n_epochs=cfg["epochs"] + 1, batch_size=cfg["batch_size"], lr=1e-3,
                      show_progress=False, callback=lambda *_, m=marks: m.append(time.perf_counter()))  # fmt: skip
            runs["sclens"].append((marks[-1] - marks[0]) / cfg["epochs"])
            runs["tuned"].append(plain_loop(model(), x, batch_size=cfg["batch_size"], n_epochs=cfg["epochs"],
                                            tuned=True))  # fmt: skip
            print(" ".join(f"{k} {v[-1]:.2f}" for k, v in runs.items()), file=sys.stderr, flush=True)  # progress
    return {**cfg, **runs}


def overhead_table(args: argparse.Namespace) -> None:
    import statistics

    cfg = {"n": args.overhead_cells, "d": 20, "F": 10_000, "arch": "vanilla", "k": 32, "batch_size": 128,
           "epochs": 1, "threads": args.threads, "repeats": args.overhead_repeats}  # fmt: skip
    r = _in_child("--one-overhead", cfg, label="overhead")
    if r is None:
        return
    labels = {"plain": "plain PyTorch loop (torch.optim.Adam)", "sclens": "sclens train_sae",
              "tuned": "plain loop, train_sae's optimizer settings"}  # fmt: skip
    rows = []
    for name in ("plain", "sclens", "tuned"):
        t = r[name]
        ratio = [a / b for a, b in zip(t, r["plain"], strict=True)]
        rows.append({
            "loop": labels[name], "s_per_epoch": statistics.median(t), "s_min": min(t), "s_max": max(t),
            "ratio": statistics.median(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio),
        })  # fmt: skip
    dataset = f"make_data: {cfg['n']:,} cells x 20 dims -> 10,000 vanilla features, batch 128"
    notes = (
        f"seconds per epoch after a warm-up epoch, {cfg['repeats']} interleaved runs: median, min, max; "
        "ratio = train_sae (or tuned loop) / plain loop of the same run"
    )
    save("fit_sae_overhead", rows, dataset=dataset, params=cfg, notes=notes)


OLD_DEFAULTS = {"lr": 1e-4, "n_epochs": 50, "batch_size": 1024}  # fit_sae before convergence-based training


def run_recovery(cfg: dict) -> dict:
    """``sl.tl.fit_sae`` on a planted dictionary with only ``use_rep``, ``k`` (and ``cfg['train']``) given."""
    import anndata as ad
    import lightning.fabric  # noqa: F401
    import numpy as np

    import sclens as sl
    from sclens.sae import torch_threads

    x, atoms = make_data(cfg["n"], cfg["d"], n_atoms=3 * cfg["d"], active=cfg["active"], return_atoms=True)
    adata = ad.AnnData(obsm={"X_emb": x}, shape=(cfg["n"], 0))
    with torch_threads(cfg["threads"]):
        t0, c0 = time.perf_counter(), time.process_time()
        sl.tl.fit_sae(adata, use_rep="X_emb", k=cfg["k"], n_jobs=cfg["threads"], **cfg["train"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    run = adata.uns["sae"]
    w = run["weights"]["W_dec"]
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    m = run["metrics"]
    return {
        **cfg, "cosine": float(np.abs(atoms @ w.T).max(1).mean()), "fvu": m["fvu"], "l0": m["l0"],
        "dead": m["dead_fraction"], "steps": int(m["n_steps"]), "stop": str(m["stop_reason"]), "wall_s": wall,
        "cpu_s": cpu,
    }  # fmt: skip


def recovery_table(args: argparse.Namespace) -> None:
    sizes = [int(v) for v in args.recovery_cells.split(",")]
    dims = [int(v) for v in args.recovery_dims.split(",")]
    variants = {"new": {}, "old": OLD_DEFAULTS} if args.old else {"new": {}}
    rows = []
    for n in sizes:
        for d in dims:
            for name, train in variants.items():
                cfg = {
                    "n": n,
                    "d": d,
                    "k": args.recovery_k,
                    "active": args.active,
                    "threads": args.threads,
                    "train": train,
                }
                r = _in_child("--one-recovery", cfg, label=f"{n} cells, {d} dims, {name} defaults")
                if r is None:
                    continue
                keys = ("cosine", "fvu", "l0", "dead", "steps", "stop", "wall_s", "cpu_s")
                rows.append({"cells": n, "dims": d, "defaults": name, **{k: r[k] for k in keys}})
                print(rows[-1], flush=True)
    dataset = f"make_data: 3*dims unit atoms, {args.active} active per cell, noise 0.05"
    notes = (
        f"fit_sae(use_rep, k={args.recovery_k}) at its default width (16*dims, at most cells/3); cosine = mean over "
        "atoms of the best |cosine| with a decoder row; old = lr 1e-4, 50 epochs, batch 1024"
    )
    save("fit_sae_recovery", rows, dataset=dataset, params=vars(args), notes=notes)


def _rss_mb() -> tuple[float, float]:
    """Current and peak resident set size (MB) of this process."""
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh)
    return float(status["VmRSS"].split()[0]) / 1024, float(status["VmHWM"].split()[0]) / 1024


def write_h5(path: str, n: int, d: int, block: int = 50_000) -> None:
    """Write ``make_data`` rows to ``path`` block by block (the writer never holds it all)."""
    import h5py

    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(n, d), dtype="float32")
        for s in range(0, n, block):
            ds[s : s + block] = make_data(min(block, n - s), d, seed=s)


def run_memory(cfg: dict) -> dict:
    import h5py
    import lightning.fabric  # noqa: F401
    import torch

    from sclens.sae import SAEConfig, SparseAutoencoder, torch_threads, train_sae

    with h5py.File(cfg["path"], "r") as f, torch_threads(cfg["threads"]):
        x = f["x"]
        sae = SparseAutoencoder(
            SAEConfig(input_dim=cfg["d"], n_features=cfg["F"], architecture=cfg["arch"], k=cfg["k"]), seed=0
        )
        with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
            fh.write("5")
        base, _ = _rss_mb()
        t0 = time.perf_counter()
        train_sae(sae, x, n_epochs=1, batch_size=cfg["batch_size"], lr=1e-3, show_progress=False)
        sec = time.perf_counter() - t0
        _, peak = _rss_mb()
    torch.set_num_threads(1)
    return {**cfg, "base_mb": base, "increase_mb": peak - base, "seconds": sec}


def memory_table(args: argparse.Namespace) -> None:
    import tempfile
    from pathlib import Path

    d, f, arch = args.memory_dims, args.memory_features, "topk"
    sizes = [int(v) for v in args.memory_cells.split(",")]
    batches = [int(v) for v in args.memory_batches.split(",")]
    n_fixed, b_fixed = sizes[len(sizes) // 2], args.batch_size
    runs = [(n_fixed, b) for b in batches] + [(n, b_fixed) for n in sizes if n != n_fixed]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({n for n, _ in runs}):
            write_h5(str(Path(tmp) / f"x{n}.h5"), n, d)
        for n, b in runs:
            cfg = {"path": str(Path(tmp) / f"x{n}.h5"), "n": n, "d": d, "F": f, "arch": arch, "k": args.k,
                   "batch_size": b, "threads": args.threads}  # fmt: skip
            r = _in_child("--one-memory", cfg, label=f"{n} cells, batch {b}")
            if r is None:
                continue
            rows.append({
                "cells": n, "data_mb": n * d * 4 / 2**20, "batch": b, "base_mb": r["base_mb"],
                "peak_increase_mb": r["increase_mb"], "s_per_epoch": r["seconds"],
            })  # fmt: skip
            print(rows[-1], flush=True)
    dataset = f"make_data written to HDF5: {d} dims, streamed in chunks of max(batch, 32 MB)"
    notes = f"peak RSS increase of one train_sae epoch ({arch}, {f} features, k={args.k}, {args.threads} thread(s))"
    save("fit_sae_memory", rows, dataset=dataset, params=vars(args), notes=notes)


def _in_child(flag: str, cfg: dict, *, label: str) -> dict | None:
    """Run one configuration in a fresh process (so peak RSS is its own); ``None`` if it failed."""
    out = subprocess.run([sys.executable, __file__, flag, json.dumps(cfg)], capture_output=True, text=True)
    if out.returncode:
        print(f"{label} failed: {out.stderr.strip().splitlines()[-1]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20k cells, 20 dims, topk/batchtopk only")
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--memory", action="store_true", help="peak RSS of one epoch vs batch size and vs data size")
    ap.add_argument("--memory-cells", default="50000,200000,800000", help="data sizes for --memory")
    ap.add_argument("--memory-batches", default="256,1024,4096,16384", help="batch sizes for --memory")
    ap.add_argument("--memory-dims", type=int, default=128)
    ap.add_argument("--memory-features", type=int, default=512)
    ap.add_argument("--recovery", action="store_true", help="planted-dictionary recovery with fit_sae defaults")
    ap.add_argument("--recovery-cells", default="1000,10000,100000")
    ap.add_argument("--recovery-dims", default="16,64")
    ap.add_argument("--active", type=int, default=3, help="active atoms per cell for --recovery")
    ap.add_argument("--recovery-k", type=int, default=3, help="TopK k for --recovery")
    ap.add_argument("--old", action="store_true", help="--recovery: also run the old defaults side by side")
    ap.add_argument("--overhead", action="store_true", help="train_sae vs a plain PyTorch loop (vanilla, batch 128)")
    ap.add_argument("--overhead-cells", type=int, default=100_000)
    ap.add_argument("--overhead-repeats", type=int, default=3, help="alternating plain / sclens runs (median)")
    ap.add_argument("--one-overhead", help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-recovery", help=argparse.SUPPRESS)
    ap.add_argument("--one-memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    children = {"one": run_one, "one_overhead": run_overhead, "one_recovery": run_recovery, "one_memory": run_memory}
    for flag, run in children.items():  # a child process: one configuration, result as JSON
        if getattr(args, flag):
            print(json.dumps(run(json.loads(getattr(args, flag)))))
            return
    for flag, table in {"overhead": overhead_table, "recovery": recovery_table, "memory": memory_table}.items():
        if getattr(args, flag):
            table(args)
            return
    if args.quick:
        grid = [(20, 4096, a) for a in ("topk", "batchtopk")]
        n = 20_000
    else:
        grid = [(20, f, a) for f in (4096, 10_000) for a in ARCHS] + [(512, 4096, a) for a in ARCHS]
        n = args.cells
    rows = []
    for d, f, arch in grid:
        cfg = {"n": n, "d": d, "F": f, "arch": arch, "k": args.k, "epochs": args.epochs,
               "batch_size": args.batch_size, "threads": args.threads}  # fmt: skip
        r = _in_child("--one", cfg, label=f"{d} dims, {f} features, {arch}")
        if r is None:
            continue
        keys = ("s_per_epoch", "cells_per_s", "peak_rss_mb", "data_rss_mb", "fvu", "l0", "dead")
        rows.append({"dims": d, "features": f, "arch": arch, **{k: r[k] for k in keys}})
        print(rows[-1], flush=True)
    dataset = f"make_data: {n:,} cells, 4*dims unit atoms, 5 active per cell"
    notes = f"batch {args.batch_size}, k={args.k}, {args.epochs} epoch(s), {args.threads} torch thread(s)"
    save("fit_sae_quick" if args.quick else "fit_sae", rows, dataset=dataset, params=vars(args), notes=notes)


if __name__ == "__main__":
    main()

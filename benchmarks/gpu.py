"""GPU training throughput: ``python benchmarks/gpu.py [--budget 300]`` (needs a CUDA build of torch).

Prints cells/s of one ``train_sae`` epoch for 1M cells x 64 dims, 16,384 TopK features, k=32,
batch 4096, in fp32 and bf16-mixed, with the embedding given as a host numpy array (pinned,
prefetched batches) or as a CUDA tensor (shuffled and batched on the GPU), next to a plain PyTorch
loop over the same model. Each row runs a warm-up epoch on 100k cells, then times the second of
two epochs on all cells (callback marks, after ``torch.cuda.synchronize``). Rows are skipped once
``--budget`` seconds have passed, so the whole script stays within about that time.
Needs only the package's own dependencies (``pip install -e . -c constraints.txt``) and a CUDA torch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def timed_epoch(x, *, precision: str, batch_size: int, n_features: int, k: int) -> float:
    """Seconds of the second of two ``train_sae`` epochs (the first includes data statistics)."""
    from sclens.sae import SAEConfig, SparseAutoencoder, train_sae

    sae = SparseAutoencoder(SAEConfig(input_dim=x.shape[1], n_features=n_features, k=k), seed=0)
    marks = []

    def mark(*_):
        torch.cuda.synchronize()
        marks.append(time.perf_counter())

    train_sae(sae, x, n_epochs=2, batch_size=batch_size, lr=2e-4, accelerator="cuda", precision=precision,
              show_progress=False, callback=mark)  # fmt: skip
    return marks[1] - marks[0]


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fit_sae import make_data, plain_loop

    from sclens.sae import SAEConfig, SparseAutoencoder

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--features", type=int, default=16_384)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--budget", type=float, default=300.0, help="skip remaining rows after this many seconds")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: this benchmark needs a GPU.")
        return
    t_start = time.perf_counter()
    x = make_data(args.cells, args.dims)
    xs = {"numpy (host)": x, "CUDA tensor": torch.from_numpy(x).cuda()}
    kw = {"batch_size": args.batch_size, "n_features": args.features, "k": args.k}
    print(f"# {torch.cuda.get_device_name()}: {args.cells} cells x {args.dims} dims, {args.features} TopK "
          f"features, k={args.k}, batch {args.batch_size}; data made in {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print(f"{'input':>14} {'precision':>11} {'s/epoch':>8} {'M cells/s':>10}")
    for precision in ("32-true", "bf16-mixed"):
        for name, data in xs.items():
            if time.perf_counter() - t_start > args.budget:
                print(f"{name:>14} {precision:>11}  skipped (budget of {args.budget:.0f} s spent)")
                continue
            timed_epoch(data[:100_000], precision=precision, **kw)  # warm-up: kernels, allocator
            sec = timed_epoch(data, precision=precision, **kw)
            print(f"{name:>14} {precision:>11} {sec:>8.2f} {args.cells / sec / 1e6:>10.2f}", flush=True)
    if time.perf_counter() - t_start < args.budget:
        model = SparseAutoencoder(SAEConfig(input_dim=args.dims, n_features=args.features, k=args.k), seed=0)
        sec = plain_loop(model, x, batch_size=args.batch_size, n_epochs=1, device="cuda")
        print(f"{'plain loop':>14} {'32-true':>11} {sec:>8.2f} {args.cells / sec / 1e6:>10.2f}   (CUDA tensor, no trainer)")
    print(f"# total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()

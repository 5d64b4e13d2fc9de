"""An annotated toy AnnData for the atlas tests: feature XX is planted program_XX."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

import sclens as sl


def annotated_toy() -> object:
    """600 cells x 200 genes, 16 planted programs + a dead feature, specificity and annotation run."""
    adata = sl.datasets.toy(n_cells=600, n_genes=200, random_state=0)
    codes = np.column_stack([adata.obsm["X_codes"], np.zeros(adata.n_obs)]).astype(np.float32)
    adata.obsm["X_sae"] = sparse.csr_matrix(codes)
    freq = (codes > 0).mean(0)
    adata.uns["sae"] = {
        "params": {"use_rep": "X_emb"},
        "features": pd.DataFrame({"frequency": freq}, index=[str(i) for i in range(codes.shape[1])]),
    }
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    sl.tl.feature_specificity(adata, groupby="cell_type")
    sl.tl.annotate_features(adata, gene_sets=adata.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.9, n_low=200)
    return adata

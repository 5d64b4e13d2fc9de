"""Features-level AnnData of the feature x GO-term space written by ``sl.tl.feature_space``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._docs import doc_params
from .._readers import features_table, result


@doc_params()
def feature_space(adata: AnnData, *, annotation_key: str = "sae_go", space_key: str = "feature_space") -> AnnData:
    """Return the feature x GO-term space as an AnnData with one row per annotated SAE feature.

    Parameters
    ----------
    {adata}
    {annotation_key}
    {space_key}

    Returns
    -------
    AnnData (features x terms) with ``X`` the 0/1 CSR matrix, ``obs`` indexed by feature id
    (string) with ``feature``, ``category``, ``n_terms`` (and the SAE feature-table columns
    ``kind``, ``top_group``, ``label`` when present), ``var`` indexed by term with ``name`` and
    ``namespace``, ``obsm['X_umap']`` and ``uns['summary']``, ``uns['top_terms']``, ``uns['params']``.
    """
    from anndata import AnnData

    space = result(adata, "feature_space", key=space_key, parent=annotation_key)
    feats = np.asarray(space["features"], dtype=np.int64)
    obs = pd.DataFrame(
        {
            "feature": feats,
            "category": pd.Categorical(np.asarray(space["category"]).astype(str)),
            "n_terms": np.asarray(space["n_terms"], dtype=np.int64),
        },
        index=feats.astype(str),
    )
    table = features_table(adata, str(space["params"].get("sae_key", "sae")))
    if isinstance(table, pd.DataFrame):
        for col in ("kind", "top_group", "label"):
            if col in table.columns:
                obs[col] = table[col].reindex(obs.index).to_numpy()
    var = pd.DataFrame(
        {
            "name": np.asarray(space["term_name"]).astype(str),
            "namespace": np.asarray(space["term_namespace"]).astype(str),
        },
        index=np.asarray(space["terms"]).astype(str),
    )
    out = AnnData(X=sparse.csr_matrix(space["matrix"], dtype=np.float32), obs=obs, var=var)
    out.obsm["X_umap"] = np.asarray(space["umap"], dtype=np.float32)
    out.uns["summary"] = dict(space["summary"])
    out.uns["top_terms"] = space["top_terms"].copy()
    out.uns["params"] = dict(space["params"])
    return out

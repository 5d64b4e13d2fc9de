"""The one checked reader of SAE runs (``sclens._readers.sae_run``) and the checks its callers ask for."""

import numpy as np
import pytest
from anndata import AnnData
from scipy import sparse

from sclens._readers import sae_run


def _run(**entries) -> AnnData:
    adata = AnnData(np.zeros((5, 3), dtype=np.float32))
    adata.obsm["X_sae"] = sparse.csr_matrix(np.ones((5, 4), dtype=np.float32))
    adata.uns["sae"] = {"params": {"use_rep": "X"}, "weights": {"W_dec": np.zeros((4, 3))}, **entries}
    return adata


def test_sae_run_checks_what_callers_ask_for():
    adata = _run()
    assert sae_run(adata, "sae", need=(), arrays=("W_dec",), activations=True) is adata.uns["sae"]
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]\['weights'\]\['W_enc'\]` not found; refit"):
        sae_run(adata, "sae", need=(), arrays=("W_enc",))
    with pytest.raises(KeyError, match=r"lacks \['metrics'\]"):
        sae_run(adata, "sae", need=("metrics",))
    del adata.obsm["X_sae"]
    assert sae_run(adata, "sae") is adata.uns["sae"]  # activations not asked for
    with pytest.raises(KeyError, match=r"No SAE run under key 'sae' \(it needs `adata.obsm\['X_sae'\]`"):
        sae_run(adata, "sae", need=(), activations=True)


def test_baseline_passes_unless_weights_are_needed():
    adata = _run()
    adata.uns["sae"] = {"params": {"source": "baseline_features", "method": "pca"}, "components": np.zeros((4, 3))}
    assert sae_run(adata, "sae", need=(), activations=True) is adata.uns["sae"]
    with pytest.raises(TypeError, match=r"is a baseline \(PCA\)"):
        sae_run(adata, "sae")

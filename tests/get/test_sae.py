import numpy as np
import pytest
import torch

import sclens as sl


def test_get_sae_rebuilds_model():
    adata = sl.datasets.toy(n_cells=200, n_genes=200, random_state=1)
    sl.tl.fit_sae(adata, use_rep="X_emb", architecture="batchtopk", n_features=32, k=3, n_epochs=1, lr=1e-2,
                  key_added="bt")  # fmt: skip
    sae = sl.get.sae(adata, sae_key="bt")
    assert sae.cfg.architecture == "batchtopk" and not sae.training
    assert float(sae.threshold) == pytest.approx(float(adata.uns["bt"]["weights"]["threshold"]))
    x = torch.from_numpy(adata.obsm["X_emb"].astype(np.float32))
    with torch.no_grad():
        np.testing.assert_array_equal(sae.encode(x).numpy(), adata.obsm["X_bt"].toarray())
        assert sae.decode(sae.encode(x)).shape == x.shape
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]` not found; SAE runs present: \['bt'\]"):
        sl.get.sae(adata)

"""A user-registered architecture trains, is stored in ``uns``, saved and loaded like the built-in ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sclens as sl
from sclens.sae import Architecture, _registry, available_architectures, load_sae, register_architecture, save_sae


@pytest.fixture
def shifted_relu(monkeypatch):
    """``relu(x @ W_enc + b_enc - 0.1)``: a dense rule the built-ins do not have; removed after the test."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @register_architecture
    class ShiftedReLU(Architecture):
        name = "test_shifted_relu"
        uses_l1 = True

        def activate(self, sae, xc):
            return torch.relu(xc @ sae.W_enc + sae.b_enc - 0.1), None

    return ShiftedReLU


def test_custom_architecture_fit_save_load(shifted_relu, tmp_path):
    assert "test_shifted_relu" in available_architectures()
    adata = sl.datasets.toy(n_cells=300, n_genes=200, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, architecture="test_shifted_relu", n_epochs=3,
                  batch_size=64, lr=1e-3, random_state=0)  # fmt: skip
    assert adata.uns["sae"]["params"]["architecture"] == "test_shifted_relu"
    model = sl.get.sae(adata)
    x = torch.as_tensor(np.asarray(adata.obsm["X_emb"][:50], dtype=np.float32))
    with torch.no_grad():
        z = model.encode(x).numpy()
    np.testing.assert_allclose(z, adata.obsm["X_sae"][:50].toarray(), rtol=1e-4, atol=1e-5)
    back = load_sae(save_sae(model, tmp_path / "custom"))
    assert back.cfg.architecture == "test_shifted_relu"
    with torch.no_grad():
        np.testing.assert_allclose(back.encode(x).numpy(), z, rtol=1e-5, atol=1e-6)
    assert (z >= 0).all()
    assert 0 < (z > 0).mean() < 1

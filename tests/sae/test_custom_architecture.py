"""A user-registered architecture trains, is stored in ``uns``, saved and loaded like the built-in ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import sclens as sl
from sclens.sae import (
    Architecture,
    ArchitectureConfig,
    _registry,
    available_architectures,
    load_sae,
    register_architecture,
    save_sae,
)


@dataclass(frozen=True)
class ShiftConfig(ArchitectureConfig):
    """The test architecture's own setting."""

    shift: float = 0.1

    def check(self) -> None:
        self._require("shift", ">= 0", ok=self.shift >= 0)


@pytest.fixture
def shifted_relu(monkeypatch):
    """``relu(x @ W_enc + b_enc - shift)``: a dense rule the built-ins do not have; removed after the test."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @register_architecture
    class ShiftedReLU(Architecture):
        name = "test_shifted_relu"
        uses_l1 = True
        config_class = ShiftConfig

        def activate(self, sae, xc):
            return torch.relu(xc @ sae.W_enc + sae.b_enc - self.config.shift), None

    return ShiftedReLU


def test_custom_architecture_fit_save_load(shifted_relu, tmp_path):
    assert "test_shifted_relu" in available_architectures()
    adata = sl.datasets.toy(n_cells=300, n_genes=200, random_state=0)
    with pytest.raises(ValueError, match=r"architecture_options\['shift'\] \(ShiftConfig\) must be >= 0, got -1.0"):
        sl.tl.fit_sae(adata, use_rep="X_emb", architecture="test_shifted_relu",
                      sae_kwargs={"architecture_options": {"shift": -1}})  # fmt: skip
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, architecture="test_shifted_relu", n_epochs=3,
                  batch_size=64, lr=1e-3, random_state=0,
                  sae_kwargs={"architecture_options": {"shift": 0.2}})  # fmt: skip
    assert adata.uns["sae"]["params"]["architecture"] == "test_shifted_relu"
    assert adata.uns["sae"]["params"]["architecture_options"] == {"shift": 0.2}
    model = sl.get.sae(adata)
    x = torch.as_tensor(np.asarray(adata.obsm["X_emb"][:50], dtype=np.float32))
    with torch.no_grad():
        z = model.encode(x).numpy()
    np.testing.assert_allclose(z, adata.obsm["X_sae"][:50].toarray(), rtol=1e-4, atol=1e-5)
    assert model.arch.config == ShiftConfig(shift=0.2)
    back = load_sae(save_sae(model, tmp_path / "custom"))
    assert back.cfg.architecture == "test_shifted_relu"
    assert back.arch.config == ShiftConfig(shift=0.2)
    with torch.no_grad():
        np.testing.assert_allclose(back.encode(x).numpy(), z, rtol=1e-5, atol=1e-6)
    assert (z >= 0).all()
    assert 0 < (z > 0).mean() < 1

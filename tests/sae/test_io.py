"""``sclens.sae._io``: safetensors save / load, the uns array layout, input-width checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sclens.sae import SAEConfig, SparseAutoencoder, check_input_dim, from_arrays, load_sae, save_sae, to_arrays


@pytest.fixture
def model():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(input_dim=6, n_features=24, architecture="topk", k=3, center=True), seed=0)
    with torch.no_grad():  # non-trivial normalisation, so folding it into the weights is exercised
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return sae.eval()


def _encode(sae, x):
    with torch.no_grad():
        return sae.encode(torch.as_tensor(x)).numpy()


def test_save_load_round_trip(model, tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
    path = save_sae(model, tmp_path / "sae")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae.safetensors"]
    meta = json.loads((path / "cfg.json").read_text())
    assert meta["format"] == "sclens-sae"
    assert meta["n_features"] == 24
    assert meta["k"] == 3
    back = load_sae(path, input_dim=6)
    np.testing.assert_allclose(_encode(back, x), _encode(model, x), rtol=1e-5, atol=1e-6)
    assert not back.training


def test_arrays_round_trip_is_exact(model):
    arrays = to_arrays(model)
    assert {"W_enc", "b_enc", "W_dec", "b_dec"} <= set(arrays)
    assert all(a.dtype == np.float32 for a in arrays.values())
    back = from_arrays({**model.cfg.to_dict(), "use_rep": "X_emb"}, arrays)  # extra keys are ignored
    for name, a in to_arrays(back).items():
        np.testing.assert_array_equal(a, arrays[name])


def test_io_errors(model, tmp_path):
    path = save_sae(model, tmp_path / "sae")
    with pytest.raises(FileExistsError, match="pass `overwrite=True`"):
        save_sae(model, path)
    save_sae(model, path, overwrite=True)
    with pytest.raises(ValueError, match="trained on 6-dimensional inputs but the data has 5 columns"):
        load_sae(path, input_dim=5)
    with pytest.raises(FileNotFoundError, match="is not a saved SAE"):
        load_sae(tmp_path / "missing")
    meta = json.loads((path / "cfg.json").read_text())
    (path / "cfg.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="has format 'other', expected 'sclens-sae'"):
        load_sae(path)
    check_input_dim(model, 6, what="x")  # the right width passes
    with pytest.raises(ValueError, match="but x has 7 columns"):
        check_input_dim(model, 7, what="x")

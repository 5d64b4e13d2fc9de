"""Architectures: BatchTopK inference matches training, mixed precision, Matryoshka, JumpReLU, registry."""

import numpy as np
import pytest
import torch

from sclens.sae import (
    Architecture,
    SAEConfig,
    SparseAutoencoder,
    available_architectures,
    evaluate,
    from_arrays,
    register_architecture,
    to_arrays,
    train_sae,
)


@pytest.fixture(scope="module")
def variable_sparsity():
    """Cells built from 1 or 5 of 16 unit atoms in 8 dims: per-cell sparsity varies (mean 3)."""
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(16, 8))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((1500, 16))
    for i, c in enumerate(rng.choice([1, 5], size=1500)):
        codes[i, rng.choice(16, c, replace=False)] = rng.uniform(0.5, 2.0, c)
    return (codes @ atoms).astype(np.float32), atoms


def _train(x, arch, n_epochs, **kw):
    sae = SparseAutoencoder(SAEConfig(input_dim=x.shape[1], n_features=32, k=3, architecture=arch, **kw), seed=0)
    train_sae(sae, x, n_epochs=n_epochs, batch_size=128, show_progress=False)
    return sae


def _training_mode_fvu(sae, x):
    """FVU and L0 with the batch top-k rule of training (batches of 128), without a step."""
    sse = tv = l0 = 0.0
    sae.train()
    with torch.no_grad():
        for b in torch.from_numpy(x).split(128):
            out = sae(b)
            sse += float(out.mse) * len(b)
            tv += float(out.total_variance)
            l0 += float(out.l0) * len(b)
    sae.eval()
    return sse / tv, l0 / len(x)


@pytest.mark.parametrize("n_epochs", [1, 5])
def test_batchtopk_inference_matches_training(variable_sparsity, n_epochs):
    x = variable_sparsity[0]
    sae = _train(x, "batchtopk", n_epochs, center=False, scale="none")  # no folding: same units in both modes
    ev = evaluate(sae, x)
    train_fvu, train_l0 = _training_mode_fvu(sae, x)
    assert ev.fvu == pytest.approx(train_fvu, rel=0.05)
    assert ev.l0 == pytest.approx(train_l0, rel=0.05) and train_l0 == pytest.approx(3.0)


def test_batchtopk_beats_topk_at_same_l0(variable_sparsity):
    x = variable_sparsity[0]
    ev = {arch: evaluate(_train(x, arch, 30), x) for arch in ("topk", "batchtopk")}
    assert ev["batchtopk"].l0 == pytest.approx(ev["topk"].l0, rel=0.05)
    assert ev["batchtopk"].fvu <= ev["topk"].fvu


@pytest.mark.parametrize("arch", available_architectures())
def test_bf16_mixed_precision_trains_every_architecture(arch):
    x = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
    fvu = {}
    for precision in ("32-true", "bf16-mixed"):
        sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=32, k=2, architecture=arch, dead_steps=2), seed=0)
        h = train_sae(sae, x, n_epochs=3, batch_size=100, precision=precision, show_progress=False)
        assert sae.W_dec.dtype == torch.float32 and h["fvu"][-1] < h["fvu"][0]
        fvu[precision] = evaluate(sae, x).fvu
    assert fvu["bf16-mixed"] == pytest.approx(fvu["32-true"], rel=0.1)


def test_matryoshka_prefixes_reconstruct(make_planted, best_cosine):
    x, atoms = make_planted(n=1500, d=8, n_atoms=16, active=2, seed=0)
    models = {}
    for arch in ("batchtopk", "matryoshka_batchtopk"):
        models[arch] = SparseAutoencoder(SAEConfig(input_dim=8, n_features=64, k=2, architecture=arch), seed=0)
        train_sae(models[arch], x, n_epochs=20, batch_size=128, show_progress=False)
    assert best_cosine(models["matryoshka_batchtopk"], atoms) >= 0.85
    prefix = {}
    for arch, sae in models.items():  # reconstruct from the first F/4 = 16 features only
        z = sae.encode(torch.from_numpy(x)).detach()
        z[:, 16:] = 0
        err = ((sae.decode(z).detach().numpy() - x) ** 2).sum()
        prefix[arch] = err / ((x - x.mean(0)) ** 2).sum()
    assert prefix["matryoshka_batchtopk"] < 0.8 * prefix["batchtopk"]


def test_jumprelu_learns_thresholds_and_recovers_atoms(make_planted, best_cosine):
    x, atoms = make_planted(n=1000, d=8, n_atoms=16, active=2, seed=0)
    sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=64, architecture="jumprelu", l1_weight=0.3), seed=0)
    theta0 = sae.log_threshold.detach().clone()
    train_sae(sae, x, n_epochs=20, batch_size=128, show_progress=False)
    ev = evaluate(sae, x)
    assert ev.l0 < 4 and ev.fvu < 0.2
    assert best_cosine(sae, atoms) >= 0.85
    assert not torch.allclose(sae.log_threshold.detach(), theta0)  # thresholds are trained
    again = from_arrays(sae.cfg.to_dict(), to_arrays(sae))  # the thresholds travel with the weights
    torch.testing.assert_close(again.encode(torch.from_numpy(x)), sae.encode(torch.from_numpy(x)))


def test_registering_an_existing_name_raises():
    class Again(Architecture):
        name = "topk"

    with pytest.raises(ValueError, match="'topk' is already registered"):
        register_architecture(Again)
    assert "topk" in available_architectures()

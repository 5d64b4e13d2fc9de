"""Training to convergence: default learning rate, stopping rule, best weights restored."""

import math

import numpy as np
import pytest
import torch

from sclens.sae import SAEConfig, SparseAutoencoder, Stopping, default_lr, evaluate, train_sae
from sclens.sae._schedule import Monitor, lr_factor


def test_default_lr_scales_with_inverse_sqrt_width():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(256) == pytest.approx(1.6e-3)
    assert default_lr(1024) / default_lr(4096) == pytest.approx(2.0)
    assert default_lr(4) == 1e-2  # capped


def test_monitor_decays_then_stops():
    rule = Stopping(min_steps=1, max_steps=10_000, patience=2, eval_every=1, n_decays=1, decay=0.5)
    mon = Monitor(rule)
    values = [1.0, 0.5, 0.6, 0.7, 0.4, 0.45, 0.41, 0.5]
    reasons = [mon.update(step, v)[1] for step, v in enumerate(values, start=1)]
    # two misses after 0.5 -> decay; improvement at 0.4; two misses -> stop
    assert reasons[:6] == [None] * 6 and reasons[6] == "converged"
    assert mon.lr_scale == 0.5 and mon.best == 0.4 and mon.best_step == 5


def test_monitor_respects_min_and_max_steps():
    mon = Monitor(Stopping(min_steps=5, max_steps=6, patience=1, eval_every=1, n_decays=0))
    assert [mon.update(s, 1.0)[1] for s in range(1, 7)] == [None, None, None, None, "converged", "max_steps"]


def test_lr_warmup_and_decay():
    assert lr_factor(0, warmup=10, total=None) == pytest.approx(0.1)
    assert lr_factor(50, warmup=10, total=None) == 1.0
    assert lr_factor(99, warmup=10, total=100) == pytest.approx(1 / 20)


@pytest.mark.parametrize(("kw", "match"), [({"min_steps": 0}, "min_steps must be a positive"),
                                           ({"min_steps": 10, "max_steps": 5}, "must not exceed")])  # fmt: skip
def test_stopping_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        Stopping(**kw)


@pytest.fixture(scope="module")
def converged(make_planted):
    x, atoms = make_planted(n=1200, d=8, n_atoms=12, active=2, seed=1)
    sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=64, k=2), seed=0)
    kw = {"min_steps": 200, "max_steps": 3000, "eval_every": 50, "patience": 2}  # a shorter rule than the default
    history = train_sae(sae, x[:1080], val_data=x[1080:], batch_size=256, show_progress=False, **kw)
    return sae, history, x, atoms


def test_converges_without_training_arguments(converged):
    sae, h, x, atoms = converged
    assert str(h["stop_reason"]) == "converged"
    assert 200 <= int(h["n_steps"]) < 3000
    assert float(h["lr"]) == pytest.approx(default_lr(64))
    w = sae.W_dec.detach().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    assert np.abs(atoms @ w.T).max(1).mean() >= 0.9


def test_best_weights_restored(converged):
    sae, h, x, _ = converged
    best_fvu, best_step = float(h["best_val_fvu"]), int(h["best_step"])
    at_best = list(h["step"]).index(best_step)  # the best step is an evaluation step ...
    assert float(h["val_fvu"][at_best]) == pytest.approx(best_fvu, rel=1e-6) == float(np.min(h["val_fvu"]))
    assert int(h["n_steps"]) - best_step >= 2 * 50  # ... `patience` evaluations before the stop
    # the kept model is the one of the best evaluation, not the last (measurably worse) one
    assert float(h["val_fvu"][-1]) > 1.01 * best_fvu
    assert evaluate(sae, x[1080:]).fvu == pytest.approx(best_fvu, rel=1e-3)


def test_explicit_epochs_train_exactly_that_long(make_planted):
    x = make_planted(n=600, d=8, n_atoms=16)[0]
    sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=32, k=2), seed=0)
    h = train_sae(sae, x, n_epochs=3, batch_size=100, show_progress=False)
    assert int(h["n_steps"]) == 18 and str(h["stop_reason"]) == "n_epochs"
    np.testing.assert_array_equal(h["step"], [6, 12, 18])
    assert len(h["loss_step"]) == 18 and math.isnan(float(h["best_val_fvu"]))
    with pytest.raises(ValueError, match="n_epochs must be a positive integer or None"):
        train_sae(sae, x, n_epochs=0)


def test_no_host_sync_bookkeeping_matches_boolean_indexing():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=64, k=2), seed=0)
    out = sae(torch.randn(20, 8))
    expected = torch.zeros(64, dtype=torch.bool)
    expected[out.indices[out.acts > 0]] = True
    assert torch.equal(out.fired(), expected)

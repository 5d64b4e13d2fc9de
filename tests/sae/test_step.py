"""The static training step (fixed shapes, no host sync), its CUDA-graph bookkeeping, blocked TopK, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sclens.sae._step as step_module
import sclens.sae._train as train_module
from sclens.sae import SAEConfig, SparseAutoencoder, train_sae
from sclens.sae._registry import blocked_topk

HOST_SYNC_OPS = ("aten._local_scalar_dense.default", "aten.nonzero.default", "aten.item.default")


def _fit(x, arch: str = "topk", **kw):
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=512, architecture=arch, k=4, dead_steps=5), seed=0)
    hist = train_sae(sae, x, n_epochs=2, batch_size=64, lr=3e-3, show_progress=False, fold=False, **kw)
    return hist, sae.state_dict()


def _assert_same_run(a, b, rtol=1e-5):
    np.testing.assert_allclose(a[0]["loss_step"], b[0]["loss_step"], rtol=rtol)
    np.testing.assert_allclose(a[0]["auxk_loss"], b[0]["auxk_loss"], rtol=rtol)
    for name, value in a[1].items():
        torch.testing.assert_close(b[1][name], value, rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("arch", ["topk", "vanilla", "batchtopk"])
def test_static_step_gives_the_plain_losses_and_weights(make_planted, arch):
    """1,000 cells, batches of 64 (a short last batch), features dying after 5 steps: AuxK active."""
    x, _ = make_planted(1000, 16, 64, 3, 0)
    plain = _fit(x, arch)
    if arch != "vanilla":
        assert (plain[0]["auxk_loss"] > 1).all()  # dead features reconstruct the residual in both runs
    _assert_same_run(plain, _fit(x, arch, step="static"))
    _assert_same_run(plain, _fit(x, arch, step="static", topk_select="blocked"))


def test_blocked_topk_equals_topk():
    gen = torch.Generator().manual_seed(0)
    for n, f, m in [(50, 4096, 32), (7, 1024, 5), (3, 768, 8), (4, 100, 3), (5, 64, 60)]:
        pre = torch.randn(n, f, generator=gen)
        pre[0, : 2 * m] = 1.0  # ties at the top of one row
        vals, idx = blocked_topk(pre, m)
        ref = pre.topk(m, dim=-1)
        torch.testing.assert_close(vals.sort(-1, descending=True).values, ref.values, rtol=0, atol=0)
        torch.testing.assert_close(pre.gather(1, idx), vals, rtol=0, atol=0)  # indices point at the values
        assert (idx.sort(-1).values[1:] == ref.indices[1:].sort(-1).values).all()  # no ties: the same features
        assert (idx.sort(-1).values.diff(dim=-1) > 0).all()  # never one feature twice


class _Record(TorchDispatchMode):
    """Names and output shapes of the ATen ops dispatched inside the context."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        shapes = tuple(tuple(t.shape) for t in (out if isinstance(out, tuple | list) else [out]) if hasattr(t, "shape"))
        self.ops.append((str(func), shapes))
        return out


def _recorded_steps(x, monkeypatch, **kw) -> dict[int, list[tuple[str, tuple]]]:
    """Ops of every full-batch step of ``train_sae`` by step number (1, 2, ...; dead list refreshed every 5th)."""
    steps = {}
    original = train_module._Trainer.train_step

    def train_step(self, xb):
        with _Record() as rec:
            original(self, xb)
        if len(xb) == 64:
            steps[self.step] = rec.ops

    monkeypatch.setattr(train_module._Trainer, "train_step", train_step)
    _fit(x, **kw)
    monkeypatch.undo()
    return steps


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_static_step_never_waits_for_the_device_and_keeps_its_shapes(make_planted, monkeypatch, precision):
    x, _ = make_planted(1000, 16, 64, 3, 0)
    plain = _recorded_steps(x, monkeypatch, precision=precision)
    assert any(op in HOST_SYNC_OPS for s in plain.values() for op, _ in s)  # the plain dead-list refresh reads the host
    static = _recorded_steps(x, monkeypatch, step="static", precision=precision)
    assert len(static) == 30  # 2 epochs of 15 full batches (and a short one)
    assert not [op for s in static.values() for op, _ in s if op in HOST_SYNC_OPS]
    # every step after the first (which creates Adam's state) dispatches the same ops with the same shapes,
    # while the number of dead features changes
    refresh = [s for i, s in static.items() if i % 5 == 0]
    others = [s for i, s in static.items() if i % 5 and i > 1]
    assert all(s == others[0] for s in others)
    assert all(s == refresh[0] for s in refresh)
    assert refresh[0] == [*others[0], ("aten.ge.Scalar_out", ((512,),))]  # a refresh adds the mask update


def test_bf16_static_step_close_to_fp32(make_planted):
    x, _ = make_planted(1000, 16, 64, 3, 0)
    fp32, bf16 = _fit(x, step="static")[0], _fit(x, step="static", precision="bf16-mixed")[0]
    np.testing.assert_allclose(bf16["loss_step"], fp32["loss_step"], rtol=0.05)
    assert not np.array_equal(bf16["loss_step"], fp32["loss_step"])  # autocast did run


def test_cuda_graph_bookkeeping_on_cpu(make_planted, monkeypatch):
    """The graph path with the capture replaced by a recorded call: warm-up, static input, replay, short batch."""
    calls = {"capture": 0, "replay": 0}

    def capture(fn, device):
        calls["capture"] += 1
        static = torch.zeros(())

        def replay():
            calls["replay"] += 1
            static.copy_(fn())

        return replay, static

    monkeypatch.setattr(step_module, "capture", capture)
    monkeypatch.setattr(train_module, "check_step", lambda *a, **k: None)  # cuda_graph is refused on CPU
    x, _ = make_planted(1000, 16, 64, 3, 0)
    plain = _fit(x)
    graph = _fit(x, step="cuda_graph")
    assert calls == {"capture": 1, "replay": 2 * 15 - step_module._WARMUP}  # 15 full batches an epoch
    _assert_same_run(plain, graph)


def test_step_options_checked():
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"step must be one of \('plain', 'static', 'cuda_graph'\), got 'fast'"):
        _fit(x, step="fast")
    with pytest.raises(ValueError, match="topk_select must be one of"):
        _fit(x, topk_select="approx")
    with pytest.raises(ValueError, match="step='cuda_graph' needs a CUDA device, got 'cpu'; use step='static'"):
        _fit(x, step="cuda_graph")
    batchtopk = SparseAutoencoder(SAEConfig(input_dim=16, n_features=64, architecture="batchtopk", k=4)).arch
    with pytest.raises(ValueError, match="'batchtopk' keeps per-step state on the host"):
        step_module.check_step(
            "cuda_graph", "full", device=torch.device("cuda"), world_size=1, precision="32-true", arch=batchtopk
        )
    with pytest.raises(ValueError, match="cannot use precision='16-mixed'"):  # fp16 needs a GPU
        step_module.check_step(
            "static", "full", device=torch.device("cuda"), world_size=1, precision="16-mixed", arch=batchtopk
        )
    with pytest.raises(ValueError, match="use step='plain' with several devices"):
        step_module.check_step(
            "static", "full", device=torch.device("cpu"), world_size=2, precision="32-true", arch=batchtopk
        )

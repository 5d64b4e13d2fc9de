"""Per-step cost of ``train_sae`` against a plain PyTorch loop, counted in dispatched ATen ops (not timed)."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sclens.sae._train as train_module
from sclens.sae import SAEConfig, SparseAutoencoder, evaluate, train_sae

# ops a train_sae step may add to a plain step with the same optimizer: the loss detach, the
# summed-deviation division, one stack and one in-place add of the metric sums, and two ops
# for the fired-feature mask (`> 0`, `|=`)
BOOKKEEPING_OPS = 6
# and for architectures with AuxK, the dead-feature book-keeping a plain loop lacks: the fired
# mask from compact indices (zeros, detach, two views, index_add_, `> 0`) and steps since firing
# (add_, masked_fill_)
DEAD_FEATURE_OPS = 8
HOST_SYNC_OPS = ("aten._local_scalar_dense.default", "aten.nonzero.default", "aten.item.default")


class _CountOps(TorchDispatchMode):
    """Count the ATen ops dispatched inside the context (forward, backward and optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _model(arch: str) -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(input_dim=8, n_features=256, architecture=arch, k=4), seed=0)


def _plain_step_ops(arch: str, x: torch.Tensor, optimizer: type | None = None) -> Counter[str]:
    """Ops of one step of the plain loop of ``benchmarks/fit_sae.py`` (after three warm-up steps)."""
    model = _model(arch).train()
    opt = optimizer(model.parameters()) if optimizer else torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(xb):
        out = model(xb)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        model.remove_parallel_grads_()
        opt.step()
        model.normalize_decoder_()

    for _ in range(3):
        step(x[:32])
    with _CountOps() as counter:
        step(x[torch.randperm(len(x))[:32]])  # the plain loop's batch: a random index into the data
    return counter.ops


def _sclens_step_ops(arch: str, x: np.ndarray, monkeypatch) -> Counter[str]:
    """Ops of the 5th optimizer step of ``train_sae`` (not an evaluation or dead-list refresh step)."""
    counted: list[Counter[str]] = []
    original = train_module._Trainer.train_step

    def train_step(self, xb):
        if self.step != 4:
            return original(self, xb)
        with _CountOps() as counter:
            original(self, xb)
        counted.append(counter.ops)
        return None

    monkeypatch.setattr(train_module._Trainer, "train_step", train_step)
    train_sae(_model(arch), x, n_epochs=1, batch_size=32, lr=1e-3, show_progress=False)
    assert len(counted) == 1
    return counted[0]


@pytest.mark.parametrize("arch", ["vanilla", "topk"])
def test_step_dispatches_no_more_ops_than_a_plain_loop(make_planted, monkeypatch, arch):
    x = make_planted(n=320, d=8, n_atoms=16)[0]
    ours = _sclens_step_ops(arch, x, monkeypatch)
    plain = _plain_step_ops(arch, torch.from_numpy(x))
    assert sum(ours.values()) <= sum(plain.values())
    # with the optimizer train_sae uses, a plain step differs only by the stated bookkeeping
    fused = train_module._adam
    same_opt = _plain_step_ops(arch, torch.from_numpy(x), optimizer=lambda p: fused(p, 1e-3))
    extra = BOOKKEEPING_OPS + (DEAD_FEATURE_OPS if arch == "topk" else 0)
    assert sum(ours.values()) <= sum(same_opt.values()) + extra
    # and it never waits for the device
    assert not {op: ours[op] for op in HOST_SYNC_OPS if ours[op]}


def test_adam_moments_of_dead_features_never_become_denormal(make_planted, monkeypatch):
    x = make_planted(n=320, d=8, n_atoms=16)[0]
    tiny = torch.finfo(torch.float32).tiny  # below it, a float32 is denormal
    worst: list[int] = []
    original = train_module._Trainer.train_step

    def train_step(self, xb):
        if self.step == 0:
            with torch.no_grad():
                self.model.b_enc[:8] = -1e4  # features 0-7 never fire: their gradients are exactly 0
        original(self, xb)
        state = self.optimizer.state
        if self.step == 1:  # their moments start just above the sweep threshold and then decay 0.9 a step
            for p in (self.model.W_dec, self.model.W_enc, self.model.b_enc):
                rows = (slice(0, 8),) if p is not self.model.W_enc else (slice(None), slice(0, 8))
                state[p]["exp_avg"][rows] = 1e-29
        moments = [s[k] for s in state.values() for k in ("exp_avg", "exp_avg_sq")]
        worst.append(sum(int(((m != 0) & (m.abs() < tiny)).sum()) for m in moments))

    monkeypatch.setattr(train_module._Trainer, "train_step", train_step)
    # 400 steps: 1e-29 x 0.9**n is denormal from step ~200 on without the sweep
    train_sae(_model("vanilla"), x, n_epochs=40, batch_size=32, lr=1e-3, show_progress=False)
    assert len(worst) == 400
    assert max(worst) == 0


def test_held_out_score_reads_the_device_once(make_planted, monkeypatch):
    x = make_planted(n=5000, d=8, n_atoms=16)[0]  # 5,000 held-out rows: three chunks of 2,048
    syncs: list[int] = []
    original = train_module._Trainer.score

    def score(self, xs, calib):
        with _CountOps() as counter:
            result = original(self, xs, calib)
        syncs.append(sum(counter.ops[op] for op in HOST_SYNC_OPS))
        return result

    monkeypatch.setattr(train_module._Trainer, "score", score)
    h = train_sae(_model("vanilla"), x[:500], val_data=x, n_epochs=2, batch_size=250, lr=1e-3, show_progress=False)
    # no per-chunk `float()`: the three sums are read once at the end (`tolist`, not an ATen op)
    assert syncs == [0, 0]
    assert 0 < h["val_fvu"][-1] < 1.5


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "vanilla"])
def test_evaluate_compact_activations_match_dense(make_planted, arch):
    x = make_planted(n=300, d=8, n_atoms=16)[0]
    sae = _model(arch)
    train_sae(sae, x, n_epochs=2, batch_size=32, lr=1e-2, show_progress=False)
    dense = sae.encode(torch.from_numpy(x)).detach().numpy()
    with _ShapeLog() as log:
        ev = evaluate(sae, x, batch_size=100, return_activations=True)
    np.testing.assert_allclose(ev.activations.toarray(), dense, rtol=1e-5, atol=1e-6)
    assert ev.activations.has_sorted_indices
    assert ev.activations.nnz == int((dense > 0).sum())
    np.testing.assert_allclose(ev.frequency, (dense > 0).mean(0))
    np.testing.assert_allclose(ev.mean_activation, dense.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ev.max_activation, dense.max(0), rtol=1e-6)
    if arch != "vanilla":  # compact activations never become a (batch, n_features) dense block
        assert {op for op, shape in log.outputs if shape == (100, 256)} == {"aten.addmm.default"}  # pre-activations


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_evaluate_activations_of_known_and_unknown_length_equal(make_planted, arch):
    """An array (rows known: compact activations written into arrays allocated once) and the same rows as a
    list of tensors (blocks stacked at the end) give the same CSR, a short last batch included."""
    x = make_planted(n=300, d=8, n_atoms=16)[0]
    sae = _model(arch)
    train_sae(sae, x, n_epochs=2, batch_size=32, lr=1e-2, show_progress=False)
    known = evaluate(sae, x, batch_size=128, return_activations=True).activations
    batches = [torch.from_numpy(x[i : i + 128]) for i in range(0, 300, 128)]
    unknown = evaluate(sae, batches, batch_size=128, return_activations=True).activations
    assert known.shape == (300, 256)
    assert known.nnz > 300
    for name in ("data", "indices", "indptr"):
        a, b = getattr(known, name), getattr(unknown, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


class _ShapeLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.outputs: set[tuple[str, tuple[int, ...]]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.outputs.add((str(func), tuple(t.shape)))
        return out

"""Train an SAE with Lightning Fabric on any iterable of minibatches, to convergence by default."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .._utils import progress as _progress
from ._data import DataStats, _first_rows, as_batches, data_stats, geometric_median
from ._evaluate import EvalResult, evaluate
from ._model import SparseAutoencoder
from ._schedule import Monitor, Stopping, default_lr, lr_factor
from ._step import StaticStep, check_step

logger = logging.getLogger("sclens")

CURVES = ("loss", "mse", "sparsity_loss", "auxk_loss", "fvu", "l0", "dead_fraction")
_SUMMED = ("loss", "mse", "sparsity_loss", "auxk_loss", "l0")
_MONITOR_ROWS = 8192  # held-out cells scored at each evaluation (kept on the device)
_DEAD_REFRESH = 16  # steps between updates of the dead-feature list (one host sync each)
_SWEEP_EVERY = 100  # steps between sweeps of tiny Adam moments (CPU), see `_zero_tiny_moments_`
_TINY_MOMENT = 1e-30

__all__ = ["CURVES", "EvalResult", "evaluate", "global_rank", "initialize_from_data", "torch_threads", "train_sae"]


def global_rank() -> int:
    """Rank of this process in a multi-process (DDP) run started by :func:`train_sae`; 0 otherwise."""
    dist = torch.distributed
    return int(dist.get_rank()) if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)`` (``None`` leaves it unchanged).

    On a shared machine, fewer threads than cores avoid costly thread contention.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(int(n), 1))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def initialize_from_data(model: SparseAutoencoder, data: Any, *, seed: int = 0) -> DataStats:
    """Set input centring/scaling and the decoder bias from data statistics (streamed).

    Also rescales the tied encoder so the first reconstruction has the right size
    (:meth:`SparseAutoencoder.rescale_encoder_`). Returns the statistics (with a row sample).
    """
    cfg = model.cfg
    stats = data_stats(data, seed=seed)
    if stats.mean.shape[0] != cfg.input_dim:
        msg = f"The SAE expects inputs of width {cfg.input_dim} but the data has {stats.mean.shape[0]} columns."
        raise ValueError(msg)
    mean = stats.mean if cfg.center else np.zeros_like(stats.mean)
    floor = 1e-12 * max(float(stats.var.max()), np.finfo(np.float64).tiny)  # relative: any input scale works
    if cfg.scale == "norm":
        scale = np.full_like(stats.mean, np.sqrt(max(stats.var.sum() / cfg.input_dim, floor)))
    elif cfg.scale == "std":
        scale = np.sqrt(np.maximum(stats.var, floor))
    else:
        scale = np.ones_like(stats.mean)
    if cfg.b_dec_init == "mean":
        b_dec = stats.mean
    elif cfg.b_dec_init == "median":
        b_dec = geometric_median(stats.sample)
    else:
        b_dec = mean
    b_dec = (b_dec - mean) / scale
    model.set_normalization_(torch.from_numpy(mean), torch.from_numpy(scale), torch.from_numpy(b_dec))
    if len(stats.sample):
        model.rescale_encoder_(torch.from_numpy(np.asarray(stats.sample, dtype=np.float32)).to(model.device))
    return stats


def _device_batches(batches: Iterable[Any], device: torch.device) -> Iterator[torch.Tensor]:
    """Float32 batches on ``device``; on CUDA, host batches are pinned and copied one batch ahead."""
    pending = None
    for b in batches:
        t = torch.as_tensor(b)
        if t.dtype != torch.float32:
            t = t.float()
        if device.type == "cuda" and t.device.type == "cpu":
            t = t.pin_memory().to(device, non_blocking=True)
        elif t.device != device:
            t = t.to(device)
        if pending is not None:
            yield pending
        pending = t
    if pending is not None:
        yield pending


def _adam(
    params: Iterable[torch.nn.Parameter], lr: float | torch.Tensor, *, capturable: bool = False
) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch supports it (CPU since torch 2.4, CUDA).

    The default (for-loop) Adam makes about ten passes over every parameter per step; on CPU
    it is the largest part of a small SAE's step. A tensor ``lr`` (set in place each step) and
    ``capturable`` keep the step free of host reads, as a CUDA graph needs.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    except (RuntimeError, ValueError, TypeError):  # an older torch or an unsupported device
        return torch.optim.Adam(params, lr=lr, capturable=capturable)


@torch.no_grad()
def _zero_tiny_moments_(optimizer: torch.optim.Optimizer, *, below: float = _TINY_MOMENT) -> None:
    """Set Adam moment entries smaller than ``below`` to zero, so they never become denormal.

    The moments of a feature that stopped firing decay geometrically (the first by 0.9 a step)
    and would reach denormal floats (< 1.2e-38) after some 800 steps; CPU arithmetic on denormals
    is many times slower. A value below 1e-30 needs about 190 steps to get there, so a sweep every
    :data:`_SWEEP_EVERY` steps catches every one. Moments this small move no weight (Adam's
    ``eps`` is 1e-8).
    """
    for state in optimizer.state.values():
        if (m := state.get("exp_avg")) is not None:
            m.masked_fill_(m.abs() < below, 0)
        if (v := state.get("exp_avg_sq")) is not None:  # never negative
            v.masked_fill_(v < below, 0)


def _rows_tensor(source: Any, n_max: int, device: torch.device) -> torch.Tensor:
    rows = np.concatenate(list(_first_rows(source, n_max)))[:n_max] if source is not None else np.zeros((0, 0))
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device)


class _Trainer:
    """One training run: the optimizer step, device-side metric sums, evaluations, stopping."""

    def __init__(
        self,
        fabric: Any,
        model: SparseAutoencoder,
        lr: float,
        rule: Stopping | None,
        total: int | None,
        step: str = "plain",
    ):
        self.fabric, self.model, self.rule, self.total = fabric, model, rule, total
        self.base_lr = lr
        self.warmup = min(100, max(1, (rule.max_steps if rule else (total or 1000)) // 20))
        dev = fabric.device
        rate = (
            lr
            if step == "plain"
            else torch.tensor(lr, dtype=torch.float64 if dev.type == "cpu" else torch.float32, device=dev)
        )
        optimizer = _adam(model.parameters(), rate, capturable=step == "cuda_graph")
        self.fmodel, self.optimizer = fabric.setup(model, optimizer)
        # one process: call the module itself in Fabric's precision context, without the wrapper's
        # per-step input / output conversion and backward hooks (DDP needs the wrapper's gradient sync)
        self.forward = self.fmodel if fabric.world_size > 1 else self._direct_forward
        self.sweep = dev.type == "cpu"  # GPUs compute on denormals at full speed
        self.since_fired = torch.zeros(model.n_features, dtype=torch.long, device=dev)
        self.dead_idx: torch.Tensor | None = None
        self.sums = torch.zeros(len(_SUMMED) + 1, dtype=torch.float64, device=dev)
        self.fired = torch.zeros(model.n_features, dtype=torch.bool, device=dev)
        self.n_seen, self.step = 0, 0
        self.losses: list[torch.Tensor] = []
        self.history: dict[str, list[float]] = {c: [] for c in (*CURVES, "step", "val_fvu", "val_loss")}
        self.monitor = Monitor(rule) if rule else None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.static = StaticStep(self, graph=step == "cuda_graph") if step != "plain" else None

    def _direct_forward(self, x: torch.Tensor, **kw: Any) -> Any:
        with self.fabric.autocast():
            return self.model(x, **kw)

    def train_step(self, x: torch.Tensor) -> None:
        model = self.model
        scale = self.monitor.lr_scale if self.monitor else 1.0
        lr = self.base_lr * scale * lr_factor(self.step, warmup=self.warmup, total=self.total)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # a device op: no host read, the same tensor in a CUDA graph
            else:
                group["lr"] = lr
        if self.static is not None:
            loss = self.static(x)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.update(x, self.dead_idx if model.arch.uses_auxk else None)
        self.n_seen += x.shape[0]
        self.losses.append(loss)
        self.step += 1
        if model.arch.uses_auxk and self.step % min(_DEAD_REFRESH, model.cfg.dead_steps) == 0:
            if self.static is not None:
                self.static.refresh_dead(model.cfg.dead_steps)
            else:
                self.dead_idx = (self.since_fired >= model.cfg.dead_steps).nonzero().squeeze(1)
        if self.sweep and self.step % _SWEEP_EVERY == 0:
            _zero_tiny_moments_(self.optimizer)

    def update(self, x: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
        """Forward, backward, Adam step, decoder norms and device-side metric sums of one batch; returns the loss."""
        model, fabric = self.model, self.fabric
        out = self.forward(x, dead_mask=dead)
        fabric.backward(out.loss)
        model.remove_parallel_grads_()
        self.optimizer.step()
        model.normalize_decoder_()
        fired = out.fired()
        if fabric.world_size > 1:
            fired = fabric.all_reduce(fired.float(), reduce_op="sum") > 0
        if model.arch.uses_auxk:  # steps since firing only matter for the AuxK dead list
            self.since_fired.add_(1).masked_fill_(fired, 0)
        self.fired |= fired
        n = x.shape[0]
        loss = out.loss.detach()
        # per-cell means times n, and the batch's summed deviation: one stack, one in-place add
        vals = torch.stack([loss, out.mse, out.sparsity_loss, out.auxk_loss, out.l0, out.total_variance / n])
        self.sums.add_(vals, alpha=n)
        return loss

    def log(self) -> None:
        """Append one point of the training curves (the only host sync besides the dead list)."""
        if self.n_seen == 0:
            return
        vals = self.sums.tolist()
        for c, v in zip(_SUMMED, vals, strict=False):
            self.history[c].append(v / self.n_seen)
        # FVU from summed errors and deviations: a tiny last batch (1 cell) cannot blow it up
        self.history["fvu"].append(vals[1] / max(vals[-1], 1e-30))
        self.history["dead_fraction"].append(1.0 - float(self.fired.float().mean()))
        self.history["step"].append(self.step)
        self.sums.zero_()
        self.fired.zero_()
        self.n_seen = 0

    @torch.no_grad()
    def score(self, xs: torch.Tensor, calib: torch.Tensor) -> tuple[float, float]:
        """Held-out loss (reconstruction + sparsity penalty) and FVU of rows ``xs`` in eval mode.

        The sums stay on the device until one host sync at the end.
        """
        model = self.model
        model.eval()
        model.arch.calibrate_(model, model._encoder_input(model._normalize(calib)))
        xn = model._normalize(xs)
        sums = torch.zeros(3, dtype=torch.float64, device=xs.device)  # squared error, penalty, deviation
        sums[2] = (xn - xn.mean(0)).pow(2).sum()
        for chunk in xs.split(2048):
            out = self.forward(chunk)
            sums[:2].add_(torch.stack([out.mse, out.sparsity_loss]), alpha=len(chunk))
        model.train()
        sse, penalty, total_var = sums.tolist()
        n = max(len(xs), 1)
        return (sse + model.cfg.l1_weight * penalty) / n, sse / max(total_var, 1e-12)

    def evaluate(self, xs: torch.Tensor | None, calib: torch.Tensor, *, record: bool) -> str | None:
        """Score held-out rows; update the best weights and the stopping rule. Returns a stop reason."""
        loss, fvu = self.score(xs if xs is not None else calib, calib)
        if record:
            self.history["val_fvu"].append(fvu)
            self.history["val_loss"].append(loss)
        if self.monitor is None:
            return None
        improved, reason = self.monitor.update(self.step, loss if math.isfinite(loss) else math.inf)
        if improved:
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best_fvu = fvu if record else math.nan
        if self.fabric.world_size > 1:  # every rank follows rank 0
            reason = self.fabric.broadcast(reason, src=0)
        return reason


def _check_lengths(n_epochs: int | None, lr: float | None) -> None:
    if n_epochs is not None and (
        isinstance(n_epochs, bool) or not isinstance(n_epochs, int | np.integer) or n_epochs < 1
    ):
        msg = f"n_epochs must be a positive integer or None (train until converged), got {n_epochs!r}."
        raise ValueError(msg)
    if lr is not None and not lr > 0:
        msg = f"lr must be > 0 or None (the default rule, see `sclens.sae.default_lr`), got {lr!r}."
        raise ValueError(msg)


def _make_fabric(accelerator: str, devices: int | str, strategy: str, precision: str, num_nodes: int) -> Any:
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import SingleDeviceStrategy

    fabric = Fabric(
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision, num_nodes=num_nodes
    )
    if not isinstance(fabric.strategy, SingleDeviceStrategy):
        fabric.launch()
    return fabric


def train_sae(
    model: SparseAutoencoder,
    data: Any,
    *,
    n_epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 1024,
    min_steps: int | None = None,
    max_steps: int | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    seed: int = 0,
    val_data: Any = None,
    initialize: bool = True,
    fold: bool = True,
    accelerator: str = "cpu",
    devices: int | str = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    num_nodes: int = 1,
    step: str = "plain",
    topk_select: str = "full",
    show_progress: bool | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, np.ndarray]:
    """Train ``model`` in place with Adam through :class:`lightning.fabric.Fabric`.

    ``data`` is an array-like (streamed chunk by chunk with :class:`ArrayBatches`), a torch
    tensor (batched on its own device, e.g. a CUDA tensor stays on the GPU) or any re-iterable
    of float tensors ``(n, d)``. Decoder rows are kept unit norm, with the gradient component
    parallel to each row removed before each step. For TopK-like architectures, features that
    have not fired for ``cfg.dead_steps`` steps receive the AuxK loss.

    With ``n_epochs=None`` (default) training runs until the held-out loss stops improving
    (see :class:`sclens.sae.Stopping`: every ``eval_every`` steps, ``patience`` misses in a row
    decay the learning rate, then stop), within ``min_steps`` and ``max_steps`` optimizer steps,
    and the best weights are restored. The held-out loss is measured on up to 8,192 rows of
    ``val_data``, or of the training data when no ``val_data`` is given. An explicit
    ``n_epochs`` trains exactly that long (learning rate decayed linearly over the last 20 %).
    ``lr=None`` uses :func:`sclens.sae.default_lr` (``2e-4 / sqrt(n_features / 2**14)``); the
    learning rate warms up linearly over the first (at most 100) steps. Adam is fused into one
    kernel where torch supports it; on CPU, Adam moments below 1e-30 are zeroed every 100 steps,
    so that those of features that stopped firing never become (slow) denormal floats.
    ``accelerator`` / ``devices`` / ``strategy`` / ``precision`` / ``num_nodes`` go to Fabric, so
    ``strategy="ddp", devices=4`` trains on four GPUs; the default runs in-process on CPU.

    ``step="static"`` runs the same update with fixed shapes and no host synchronisation (AuxK over
    a mask of dead features, Adam's learning rate a device tensor): the same losses and weights as
    ``"plain"`` to float rounding. ``step="cuda_graph"`` (one CUDA device) records that step once
    in a CUDA graph and replays it, which removes the launch overhead of its small kernels.
    ``topk_select="blocked"`` selects each cell's top ``k`` in two small passes (block maxima,
    then the best blocks' entries; the exact values of ``torch.topk``) instead of over all features.
    ``precision="bf16-mixed"`` runs the matrix products under bfloat16 autocast with either step.

    Returns the training history: arrays of :data:`CURVES` and ``step`` (one point per epoch, or
    per ``eval_every`` steps when training to convergence; ``dead_fraction`` is the fraction of
    features that did not fire since the previous point), ``val_fvu`` / ``val_loss`` when
    ``val_data`` is given, ``loss_step`` (loss of every step) and the scalars ``n_steps``,
    ``stop_reason`` (``"n_epochs"``, ``"converged"`` or ``"max_steps"``), ``best_step``,
    ``best_val_fvu`` and ``lr``.
    """
    _check_lengths(n_epochs, lr)
    given = {"min_steps": min_steps, "max_steps": max_steps, "patience": patience, "eval_every": eval_every}
    rule = Stopping(**{k: v for k, v in given.items() if v is not None}) if n_epochs is None else None
    lr = default_lr(model.n_features) if lr is None else float(lr)
    torch.manual_seed(seed)
    fabric = _make_fabric(accelerator, devices, strategy, precision, num_nodes)
    check_step(
        step, topk_select, device=fabric.device, world_size=fabric.world_size, precision=precision, arch=model.arch
    )
    kw = {"rank": fabric.global_rank, "world_size": fabric.world_size}
    batches = as_batches(data, batch_size=batch_size, shuffle=True, seed=seed, **kw)
    val = None if val_data is None else as_batches(val_data, batch_size=batch_size, shuffle=False, seed=seed)
    sample = (initialize_from_data(model, batches, seed=seed) if initialize else data_stats(batches, seed=seed)).sample
    model.to(fabric.device).train()
    calib = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)).to(fabric.device)
    held_out = _rows_tensor(val, _MONITOR_ROWS, fabric.device) if val is not None else None
    total = n_epochs * len(batches) if n_epochs is not None and hasattr(batches, "__len__") else None
    run = _Trainer(fabric, model, lr, rule, total, step)
    previous, model.arch.topk_select = model.arch.topk_select, topk_select
    try:
        reason = _loop(run, batches, n_epochs, held_out, calib, show_progress, callback)
    finally:
        model.arch.topk_select = previous
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.arch.calibrate_(model, model._encoder_input(model._normalize(calib)))
    model.eval()
    if fold:
        model.fold_normalization_()
    return _history(run, reason, lr)


def _loop(run: _Trainer, batches, n_epochs, held_out, calib, show_progress, callback) -> str:
    rule = run.rule
    bar_kw = {} if show_progress is None else {"disable": not show_progress}
    n_bar = n_epochs if rule is None else rule.max_steps
    bar = _progress(total=n_bar, desc="fit_sae", unit="epoch" if rule is None else "step", **bar_kw)
    epoch, reason = 0, "n_epochs"
    while rule is not None or epoch < n_epochs:
        n_before = run.step
        for x in _device_batches(batches, run.fabric.device):
            run.train_step(x)
            if rule is not None and (run.step % rule.eval_every == 0 or run.step >= rule.max_steps):
                run.log()
                stop = run.evaluate(held_out, calib, record=held_out is not None)
                bar.update(run.step - bar.n)
                _report(bar, run, callback, epoch)
                if stop is not None:
                    bar.close()
                    return stop
        if run.step == n_before:
            msg = f"The training data yielded no minibatches in epoch {epoch + 1}; pass at least 2 cells."
            raise ValueError(msg)
        if rule is None:
            run.log()
            if held_out is not None:
                run.evaluate(held_out, calib, record=True)
            bar.update(1)
            _report(bar, run, callback, epoch)
        epoch += 1
    bar.close()
    return reason


def _report(bar: Any, run: _Trainer, callback: Callable | None, epoch: int) -> None:
    h = run.history
    if callback is not None:
        callback(epoch, {c: v[-1] for c, v in h.items() if v})
    if h["fvu"]:
        bar.set_postfix(loss=f"{h['loss'][-1]:.4g}", fvu=f"{h['fvu'][-1]:.3f}")


def _history(run: _Trainer, reason: str, lr: float) -> dict[str, np.ndarray]:
    out = {c: np.asarray(v, dtype=np.float64) for c, v in run.history.items() if v}
    out["step"] = out["step"].astype(np.int64)
    out["loss_step"] = torch.stack(run.losses).double().cpu().numpy() if run.losses else np.zeros(0)
    val = run.history["val_fvu"]
    best_step = run.monitor.best_step if run.monitor is not None else run.step
    best_fvu = getattr(run, "best_fvu", None)
    if best_fvu is None:
        best_fvu = min(val) if val else math.nan
    out.update(
        n_steps=np.asarray(run.step), stop_reason=np.asarray(reason), best_step=np.asarray(best_step),
        best_val_fvu=np.asarray(best_fvu, dtype=np.float64), lr=np.asarray(lr),
    )  # fmt: skip
    return out

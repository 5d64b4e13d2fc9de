"""Training steps with fixed shapes and no host synchronisation, run eagerly or replayed as a CUDA graph.

The plain step (:class:`~sclens.sae._train._Trainer`) lets the AuxK loss gather the dead features
by index, so its shapes change whenever a feature dies or revives, and it reads the dead-feature
list on the host every few steps. :class:`StaticStep` runs the same update with the dead features
as a boolean mask (:meth:`SparseAutoencoder._auxk_loss`), Adam's learning rate as a device tensor
and every metric summed on the device: the step's kernels and their shapes never change, so the
step can be recorded once in a CUDA graph and replayed, which removes the launch overhead of the
hundreds of small kernels per step that bound a GPU at SAE sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ._registry import TOPK_SELECT, Architecture

STEPS = ("plain", "static", "cuda_graph")
_WARMUP = 3  # eager steps (on a side stream) before the capture: cuBLAS handles, allocator, Adam state


def check_step(
    step: str, topk_select: str, *, device: torch.device, world_size: int, precision: str, arch: Architecture
) -> None:
    """Raise a ``ValueError`` when ``step`` / ``topk_select`` are unknown or cannot run in this setting."""
    if step not in STEPS:
        msg = f"step must be one of {STEPS}, got {step!r}."
        raise ValueError(msg)
    if topk_select not in TOPK_SELECT:
        msg = f"topk_select must be one of {TOPK_SELECT}, got {topk_select!r}."
        raise ValueError(msg)
    if step == "plain":
        return
    if world_size > 1:
        msg = f"step={step!r} trains in one process; use step='plain' with several devices (DDP)."
        raise ValueError(msg)
    if str(precision).startswith("16"):
        msg = (
            f"step={step!r} cannot use precision={precision!r}: its loss scaler reads the gradients on the "
            "host every step; use precision='bf16-mixed' or '32-true'."
        )
        raise ValueError(msg)
    if step == "cuda_graph" and device.type != "cuda":
        msg = f"step='cuda_graph' needs a CUDA device, got {device.type!r}; use step='static' (same update, no graph)."
        raise ValueError(msg)
    if step == "cuda_graph" and not arch.capturable:
        msg = (
            f"Architecture {arch.name!r} keeps per-step state on the host and cannot be replayed as a CUDA "
            "graph; use step='static' or 'plain'."
        )
        raise ValueError(msg)


@contextlib.contextmanager
def _side_stream(device: torch.device) -> Iterator[None]:
    """Run the body on a fresh CUDA stream (as a capture's warm-up must); a no-op elsewhere."""
    if device.type != "cuda":
        yield
        return
    stream = torch.cuda.Stream(device)  # pragma: no cover - needs a CUDA device
    stream.wait_stream(torch.cuda.current_stream(device))  # pragma: no cover
    with torch.cuda.stream(stream):  # pragma: no cover
        yield
    torch.cuda.current_stream(device).wait_stream(stream)  # pragma: no cover


def capture(
    fn: Callable[[], torch.Tensor], device: torch.device
) -> tuple[Callable[[], None], torch.Tensor]:  # pragma: no cover - needs a CUDA device
    """Record ``fn()`` in a CUDA graph without running it; returns the replay and ``fn``'s (static) output."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph):
        out = fn()
    return graph.replay, out


class StaticStep:
    """The update of a trainer with fixed shapes: eager (``graph=False``) or a replayed CUDA graph.

    ``run.update(x, dead_mask)`` is the whole step (forward, backward, Adam, decoder norms, metric
    sums). With ``graph=True`` the first :data:`_WARMUP` batches run eagerly on a side stream, the
    next one is captured (input copied into a static buffer) and every batch of the same shape
    replays the graph; a batch of another shape (the short last batch of an epoch) runs eagerly.
    """

    def __init__(self, run: Any, *, graph: bool) -> None:
        self.run, self.graph = run, graph
        model = run.model
        dev = run.fabric.device
        self.dead = torch.zeros(model.n_features, dtype=torch.bool, device=dev) if model.arch.uses_auxk else None
        self.x: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.replay: Callable[[], None] | None = None
        self.n_eager = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One optimizer step on batch ``x``; returns its loss (a device scalar)."""
        if self.replay is not None and x.shape == self.x.shape:
            self.x.copy_(x)
            self.replay()
            return self.loss.clone()
        if self.graph and self.replay is None and self.n_eager >= _WARMUP:
            self.x = x.clone()
            self.replay, self.loss = capture(lambda: self._update(self.x), x.device)
            self.replay()
            return self.loss.clone()
        with _side_stream(x.device) if self.graph else contextlib.nullcontext():
            loss = self._update(x)
        self.n_eager += 1
        return loss

    def _update(self, x: torch.Tensor) -> torch.Tensor:
        # gradients set to None: backward writes fresh ones (in a graph, into buffers of its own pool)
        self.run.optimizer.zero_grad(set_to_none=True)
        return self.run.update(x, self.dead)

    def refresh_dead(self, dead_steps: int) -> None:
        """Mark features that have not fired for ``dead_steps`` steps, on the device (no host read)."""
        torch.ge(self.run.since_fired, dead_steps, out=self.dead)

"""Architectures with their own state: BatchTopK, Matryoshka BatchTopK and JumpReLU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._registry import Architecture, ArchitectureConfig, register_architecture, sum_sq_error, topk_encode


def _n_candidates(sae) -> int:
    return min(sae.n_features, 4 * sae.cfg.k)


def _batch_topk(sae, xc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Top ``k * n`` of a batch's positive pre-activations: compact values, indices and the threshold.

    Candidates are each row's top ``min(F, 4k)`` (exact unless a row takes more than ``4k`` of the
    batch's ``k * n`` slots, then the surplus is dropped). The threshold is the smallest kept
    value (``inf`` when nothing is positive); nothing here waits for the device.
    """
    vals, idx = topk_encode(xc, sae.W_enc, sae.b_enc, _n_candidates(sae), select=sae.arch.topk_select)
    flat = vals.detach().flatten()
    kth = flat.topk(min(sae.cfg.k * xc.shape[0], flat.numel()), sorted=False).values.min()
    keep = vals.detach() >= kth.clamp_min(torch.finfo(vals.dtype).tiny)
    threshold = torch.where(keep, vals.detach(), torch.full_like(vals.detach(), float("inf"))).min()
    return vals * keep, idx, threshold.float()


@dataclass(frozen=True)
class BatchTopKConfig(ArchitectureConfig):
    """Settings of ``batchtopk``.

    Parameters
    ----------
    momentum
        Weight of the running mean of the per-batch thresholds during training (an exponential
        moving average after ``1 / (1 - momentum)`` steps); in ``[0, 1)``.
    """

    momentum: float = 0.99

    def check(self) -> None:
        self._require("momentum", "in [0, 1)", ok=0 <= self.momentum < 1)


@dataclass(frozen=True)
class MatryoshkaBatchTopKConfig(BatchTopKConfig):
    """Settings of ``matryoshka_batchtopk``: ``momentum`` as :class:`BatchTopKConfig`, and its prefixes.

    Parameters
    ----------
    n_prefixes
        Nested prefixes trained to reconstruct: the first ``F / 2**j`` features, ``j < n_prefixes``
        (4: ``F/8``, ``F/4``, ``F/2``, ``F``); at least 1.
    """

    n_prefixes: int = 4

    def check(self) -> None:
        super().check()
        self._require("n_prefixes", ">= 1", ok=self.n_prefixes >= 1)


@dataclass(frozen=True)
class JumpReLUConfig(ArchitectureConfig):
    """Settings of ``jumprelu``.

    Parameters
    ----------
    bandwidth
        Width of the rectangle kernel of the thresholds' straight-through gradient, in units of the
        normalised input (mean squared norm = ``input_dim``); > 0.
    init_threshold
        Initial threshold of every feature; > 0.
    """

    bandwidth: float = 0.2
    init_threshold: float = 0.5

    def check(self) -> None:
        for name in ("bandwidth", "init_threshold"):
            value = getattr(self, name)
            self._require(name, "a finite number > 0", ok=math.isfinite(value) and value > 0)


@register_architecture
class BatchTopK(Architecture):
    """Top ``k * n`` pre-activations over a training batch of ``n`` cells (Bussmann et al. 2024).

    In evaluation each cell keeps those of its top ``4k`` activations (the training candidates)
    that reach the fixed ``threshold``, so encoding a cell does not depend on the other cells of
    its batch. During training a running mean of the per-batch
    thresholds is kept; after training (and before each held-out evaluation) :meth:`calibrate_`
    sets the threshold to the ``k * n``-th largest activation of a sample of ``n`` training cells,
    so the inference-time L0 (and FVU) match those of training.
    """

    name = "batchtopk"
    uses_k = True
    uses_auxk = True
    state = ("threshold",)
    capturable = False  # the running mean's weight is a host-side step count
    config_class = BatchTopKConfig

    def init_state(self, sae):
        sae.register_buffer("threshold", torch.tensor(-1.0))
        self._steps = 0

    def state_shapes(self, cfg):
        return {"threshold": ()}

    def activate(self, sae, xc):
        if not sae.training:  # the same per-cell candidates as in training, then the fixed threshold
            vals, idx = topk_encode(xc, sae.W_enc, sae.b_enc, _n_candidates(sae))
            return vals * (vals >= sae.threshold.to(vals.dtype).clamp_min(torch.finfo(vals.dtype).tiny)), idx
        acts, idx, threshold = _batch_topk(sae, xc)
        self._observe(sae, threshold)
        return acts, idx

    @torch.no_grad()
    def _observe(self, sae, value: Tensor) -> None:
        # running mean of the per-batch thresholds, an EMA after 1 / (1 - momentum) steps
        self._steps += 1
        beta = min(self.config.momentum, 1.0 - 1.0 / self._steps)
        new = sae.threshold * beta + (1 - beta) * value
        sae.threshold.copy_(torch.where(torch.isfinite(value), new, sae.threshold))

    @torch.no_grad()
    def calibrate_(self, sae, xc):
        if len(xc) == 0:
            return
        vals, _ = topk_encode(xc, sae.W_enc, sae.b_enc, _n_candidates(sae))
        flat = vals.flatten().float()
        n_keep = min(sae.cfg.k * xc.shape[0], flat.numel())
        top = flat.topk(min(n_keep + 1, flat.numel())).values
        kth = top[n_keep - 1]
        below = top[n_keep] if len(top) > n_keep else kth.new_zeros(())
        # half way to the next value: no activation of these cells sits on the threshold itself
        threshold = torch.where(kth > 0, (kth + below) / 2, sae.threshold)
        sae.threshold.copy_(threshold)


@register_architecture
class MatryoshkaBatchTopK(BatchTopK):
    """BatchTopK whose nested feature prefixes are each trained to reconstruct (Bussmann et al. 2025).

    The loss is the mean squared error of the reconstructions from the first ``F/8``, ``F/4``,
    ``F/2`` and all ``F`` features, so early features learn general directions and later ones
    refine them; features are ordered from general to specific.
    """

    name = "matryoshka_batchtopk"
    config_class = MatryoshkaBatchTopKConfig

    def prefixes(self, n_features: int) -> list[int]:
        return sorted({max(n_features >> j, 1) for j in range(self.config.n_prefixes)})

    def reconstruction_loss(self, sae, xn, acts, idx, recon):
        total = sum_sq_error(recon, xn)
        sizes = self.prefixes(sae.n_features)
        for m in sizes[:-1]:
            part = F.embedding_bag(
                idx, sae.W_dec, per_sample_weights=(acts * (idx < m)).to(sae.W_dec.dtype), mode="sum"
            )
            total = total + sum_sq_error(part + sae.b_dec, xn)
        return total / len(sizes)


class _JumpReLU(torch.autograd.Function):
    """``z * (z > theta)`` with the straight-through gradient of Rajamanoharan et al. (2024) for ``theta``."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        window = ((z - theta).abs() < eps / 2).to(g.dtype)
        g_theta = (-(theta / eps) * window * g).sum(0)
        return g * (z > theta), g_theta, None


class _Step(torch.autograd.Function):
    """Heaviside ``z > theta`` with the straight-through gradient for ``theta`` (none for ``z``)."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        window = ((z - theta).abs() < eps / 2).to(g.dtype)
        return None, (-(1.0 / eps) * window * g).sum(0), None


@register_architecture
class JumpReLU(Architecture):
    """``z = pre * (pre > theta_f)`` with a learned threshold per feature (Rajamanoharan et al. 2024).

    Thresholds are trained through a straight-through estimator (rectangle kernel of width
    ``bandwidth``); the sparsity penalty is ``l1_weight`` times the L0 (active features per cell).
    """

    name = "jumprelu"
    uses_l1 = True
    state = ("log_threshold",)
    config_class = JumpReLUConfig

    def init_state(self, sae):
        init = float(torch.tensor(self.config.init_threshold).log())
        sae.log_threshold = nn.Parameter(torch.full((sae.n_features,), init))

    def state_shapes(self, cfg):
        return {"log_threshold": (cfg.n_features,)}

    def _pre(self, sae, xc):
        return torch.addmm(sae.b_enc.to(xc.dtype), xc, sae.W_enc.to(xc.dtype))

    def activate(self, sae, xc):
        pre = self._pre(sae, xc)
        theta = sae.log_threshold.exp().to(pre.dtype)
        return F.relu(_JumpReLU.apply(pre, theta, self.config.bandwidth)), None

    def penalty(self, sae, xc, acts, idx):
        pre = self._pre(sae, xc).detach()
        theta = sae.log_threshold.exp().to(pre.dtype)
        return _Step.apply(pre, theta, self.config.bandwidth).float().sum() / xc.shape[0]

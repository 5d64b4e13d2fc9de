"""Architecture registry: each SAE variant is an activation rule chosen by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from torch import Tensor

    from ._model import SparseAutoencoder

_REGISTRY: dict[str, type[Architecture]] = {}


class _TopKEncode(torch.autograd.Function):
    """``ReLU`` of the row-wise top ``m`` of ``x @ W + b`` with a sparse backward pass.

    The gradient of the pre-activations has only ``m`` non-zeros per row, so the backward pass
    scatters ``n * m`` rank-one updates instead of two dense ``(n, F)`` matrix products.
    """

    @staticmethod
    def forward(ctx, x, w, b, m):
        vals, idx = torch.addmm(b, x, w).topk(m, dim=-1, sorted=False)
        vals = vals.clamp_min(0)
        ctx.save_for_backward(x, w, idx, vals)
        return vals, idx

    @staticmethod
    def backward(ctx, g_vals, _g_idx):
        x, w, idx, vals = ctx.saved_tensors
        g = g_vals * (vals > 0)
        flat = idx.flatten()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.embedding_bag(idx, w.t().contiguous(), per_sample_weights=g, mode="sum")
        if ctx.needs_input_grad[1]:
            outer = (g[..., None] * x[:, None, :]).reshape(-1, x.shape[1])
            gw = x.new_zeros(w.shape[1], w.shape[0]).index_add_(0, flat, outer).t()
        if ctx.needs_input_grad[2]:
            gb = x.new_zeros(w.shape[1]).index_add_(0, flat, g.flatten())
        return gx, gw, gb, None


def topk_encode(x: Tensor, w: Tensor, b: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Values (after ReLU) and indices of the ``m`` largest entries of each row of ``x @ w + b``."""
    return _TopKEncode.apply(x, w, b, m)


class Architecture:
    """Base class of an SAE variant.

    ``activate`` turns the encoder input ``xc`` (``(n, d)``, normalised and, with ``pre_bias``,
    minus ``b_dec``) into either ``(values, indices)`` of shape ``(n, k)`` (compact form, decoded
    by gathering ``k`` decoder rows) or ``(dense, None)`` of shape ``(n, F)``.
    """

    name: ClassVar[str] = ""
    pre_bias: ClassVar[bool] = True  # encode x - b_dec (pre-encoder bias)
    uses_k: ClassVar[bool] = False
    uses_l1: ClassVar[bool] = False
    l1_by_decoder_norm: ClassVar[bool] = False
    uses_auxk: ClassVar[bool] = False

    def activate(self, sae: SparseAutoencoder, xc: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


def register_architecture(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator adding an :class:`Architecture` subclass to the registry under ``cls.name``."""
    if not cls.name:
        msg = "An architecture needs a non-empty `name` class attribute."
        raise ValueError(msg)
    _REGISTRY[cls.name] = cls
    return cls


def available_architectures() -> list[str]:
    """Names accepted by ``SAEConfig(architecture=...)``."""
    return sorted(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    """Instantiate the registered architecture ``name``."""
    if name not in _REGISTRY:
        msg = f"Unknown SAE architecture {name!r}; choose one of {available_architectures()}."
        raise ValueError(msg)
    return _REGISTRY[name]()


@register_architecture
class Vanilla(Architecture):
    """``z = ReLU(W_enc x + b_enc)``, loss MSE + ``l1_weight * ||z||_1`` (paper eq. 1-3)."""

    name = "vanilla"
    pre_bias = False
    uses_l1 = True

    def activate(self, sae, xc):
        return F.relu(torch.addmm(sae.b_enc, xc, sae.W_enc)), None


@register_architecture
class ReLU(Vanilla):
    """Vanilla with the pre-encoder bias (``x - b_dec`` is encoded) and L1 weighted by decoder norms."""

    name = "relu"
    pre_bias = True
    l1_by_decoder_norm = True


@register_architecture
class TopK(Architecture):
    """Keep the ``k`` largest pre-activations of each cell (Gao et al. 2024), AuxK on dead features."""

    name = "topk"
    uses_k = True
    uses_auxk = True

    def activate(self, sae, xc):
        return topk_encode(xc, sae.W_enc, sae.b_enc, sae.cfg.k)


@register_architecture
class BatchTopK(Architecture):
    """Top ``k * n`` pre-activations over a training batch of ``n`` cells (Bussmann et al. 2024).

    During training the threshold of each batch (its smallest kept positive activation) is
    averaged into ``sae.threshold``; in evaluation every activation above that fixed threshold
    is kept, so encoding a cell does not depend on the other cells of its batch.
    """

    name = "batchtopk"
    uses_k = True
    uses_auxk = True

    def activate(self, sae, xc):
        if not sae.training:
            acts = F.relu(torch.addmm(sae.b_enc, xc, sae.W_enc))
            return acts * (acts > sae.threshold), None
        n = xc.shape[0]
        # candidates: every kept entry is among its row's top min(F, 4k) (exact unless a row
        # takes more than 4k of the batch's k*n slots, then the surplus is dropped)
        m = min(sae.n_features, 4 * sae.cfg.k)
        cand_vals, cand_idx = topk_encode(xc, sae.W_enc, sae.b_enc, m)
        flat = cand_vals.flatten()
        n_keep = min(sae.cfg.k * n, flat.numel())
        kth = flat.detach().topk(n_keep, sorted=False).values.min()
        keep = cand_vals.detach() >= kth.clamp_min(torch.finfo(xc.dtype).tiny)
        if keep.any():  # fewer than k * n positive candidates: the threshold is the smallest positive kept
            sae._observe_threshold(cand_vals.detach()[keep].min())
        return cand_vals * keep, cand_idx

"""The sparse autoencoder module: encode, decode and a forward pass returning all loss terms."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._config import SAEConfig
from ._registry import get_architecture, sum_sq_error, topk_encode

_EPS = 1e-12
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


class SAEOutput(NamedTuple):
    """Result of :meth:`SparseAutoencoder.forward`.

    ``acts`` / ``indices`` hold the activations in compact form: ``(n, k)`` values and feature
    indices for TopK-like architectures, or dense ``(n, F)`` values with ``indices=None``;
    :attr:`activations` gives the dense ``(n, F)`` matrix. Losses are computed on the
    normalised input (see :class:`SAEConfig` ``center`` / ``scale``). ``fvu`` is ``mse * n /
    total_variance`` (summed squared deviation of the batch from its mean); it equals the FVU in
    raw units unless ``scale="std"``, where it is the FVU of the standardised input.
    """

    reconstruction: Tensor
    acts: Tensor
    indices: Tensor | None
    loss: Tensor
    mse: Tensor
    sparsity_loss: Tensor
    auxk_loss: Tensor
    fvu: Tensor
    l0: Tensor
    n_features: int
    total_variance: Tensor
    counts: Tensor | None = None  # dense activations: cells in which each feature fired

    @property
    def activations(self) -> Tensor:
        """Dense activations, cells x features."""
        if self.indices is None:
            return self.acts
        dense = self.acts.new_zeros(self.acts.shape[0], self.n_features)
        return dense.scatter_(1, self.indices, self.acts)

    def fired(self) -> Tensor:
        """Boolean mask of features with a positive activation in this batch."""
        if self.indices is None:  # activations are >= 0; a max is several times faster than `(acts > 0).any(0)`
            return self.counts > 0 if self.counts is not None else self.acts.detach().amax(0) > 0
        # scatter-add of the (>= 0) activations instead of boolean indexing: no host synchronisation
        hits = torch.zeros(self.n_features, dtype=torch.float32, device=self.acts.device)
        return hits.index_add_(0, self.indices.flatten(), self.acts.detach().flatten().float()) > 0


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder ``x -> z (n_features, sparse, >= 0) -> x_hat``.

    Weights follow the storage contract: ``W_enc`` (d x F), ``b_enc`` (F), ``W_dec`` (F x d),
    ``b_dec`` (d), plus the architecture's own ``state`` (``threshold`` for ``batchtopk``,
    ``log_threshold`` for ``jumprelu``). Initialisation is tied
    (``W_enc = W_dec.T``) with unit-norm decoder rows.

    Parameters
    ----------
    cfg
        The configuration (architecture, sizes, sparsity settings).
    seed
        Seed of the weight initialisation; ``None`` uses torch's global generator.
    """

    def __init__(self, cfg: SAEConfig, *, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.arch = get_architecture(cfg.architecture)
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        w = torch.randn(cfg.n_features, cfg.input_dim, generator=gen)
        w /= w.norm(dim=1, keepdim=True).clamp_min(_EPS)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.n_features))
        self.b_dec = nn.Parameter(torch.zeros(cfg.input_dim))
        self.register_buffer("input_mean", torch.zeros(cfg.input_dim))
        self.register_buffer("input_scale", torch.ones(cfg.input_dim))
        self.arch.init_state(self)

    # -- properties ------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.cfg.input_dim

    @property
    def n_features(self) -> int:
        return self.cfg.n_features

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    # -- encode / decode -------------------------------------------------------------------
    def _normalize(self, x: Tensor) -> Tensor:
        return (x - self.input_mean) / self.input_scale

    def _denormalize(self, x: Tensor) -> Tensor:
        return x * self.input_scale + self.input_mean

    def check_input(self, x: Tensor) -> Tensor:
        """Return ``x`` as float on the model's device, checking its width."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            msg = (
                f"The SAE expects inputs of width {self.input_dim}, got shape {tuple(x.shape)}; "
                "encode the same embedding the SAE was trained on."
            )
            raise ValueError(msg)
        return x.to(device=self.device, dtype=self.W_dec.dtype)

    def _encoder_input(self, xn: Tensor) -> Tensor:
        return xn - self.b_dec if self.arch.pre_bias else xn

    def encode_compact(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Activations in compact form ``(values, indices)``, see :class:`SAEOutput`."""
        return self.arch.activate(self, self._encoder_input(self._normalize(self.check_input(x))))

    def encode(self, x: Tensor) -> Tensor:
        """Dense activations ``(n, F)`` of raw inputs ``x`` (input normalisation included)."""
        acts, idx = self.encode_compact(x)
        if idx is None:
            return acts
        return acts.new_zeros(acts.shape[0], self.n_features).scatter_(1, idx, acts)

    def _decode_normalized(self, acts: Tensor, idx: Tensor | None) -> Tensor:
        if idx is None:
            return acts @ self.W_dec + self.b_dec
        # sparse gather of the k active decoder rows: O(n k d) instead of O(n F d)
        w = acts.to(self.W_dec.dtype)  # bf16 activations under autocast meet float32 weights
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=w, mode="sum") + self.b_dec

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``(n, d)`` in the original embedding units from dense activations ``z``."""
        if z.ndim != 2 or z.shape[1] != self.n_features:
            msg = f"decode expects activations of shape (n, {self.n_features}), got {tuple(z.shape)}."
            raise ValueError(msg)
        return self._denormalize(self._decode_normalized(z.to(self.W_dec), None))

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: Tensor, *, dead_mask: Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the loss terms for a minibatch ``x`` (n x d).

        ``dead_mask`` marks dead features for the AuxK loss (TopK-like architectures): a tensor of
        their indices, or a boolean mask of length F (then every shape is fixed: the same cost
        whatever the number of dead features, as a CUDA graph needs). No host synchronisation.
        """
        cfg = self.cfg
        xn = self._normalize(self.check_input(x))
        xc = self._encoder_input(xn)
        acts, idx = self.arch.activate(self, xc)
        recon = self._decode_normalized(acts, idx)
        n = xn.shape[0]
        mse = sum_sq_error(recon, xn)
        total_var = (xn - xn.mean(0)).pow(2).sum().clamp_min(_EPS)
        loss = self.arch.reconstruction_loss(self, xn, acts, idx, recon)
        zero = xn.new_zeros(())
        sparsity = self.arch.penalty(self, xc, acts, idx) if self.arch.uses_l1 else None
        if sparsity is None:
            sparsity = zero
        else:
            loss = loss + cfg.l1_weight * sparsity
        auxk = zero
        if self.arch.uses_auxk and dead_mask is not None and cfg.aux_k > 0 and cfg.aux_weight > 0:
            auxk = self._auxk_loss(xc, xn, recon, dead_mask)
            loss = loss + cfg.aux_weight * auxk
        counts = None
        if idx is None:  # acts >= 0: sign is 0 / 1, much faster on CPU than `acts > 0`; counts give `fired` too
            counts = torch.sign(acts.detach()).sum(0, dtype=torch.float32)
            l0 = counts.sum() / n
        else:
            l0 = (acts > 0).sum(dtype=torch.float32) / n
        return SAEOutput(
            reconstruction=self._denormalize(recon),
            acts=acts,
            indices=idx,
            loss=loss,
            mse=mse.detach(),
            sparsity_loss=sparsity.detach(),
            auxk_loss=auxk.detach(),
            fvu=(mse * n / total_var).detach(),
            l0=l0.detach(),
            n_features=self.n_features,
            total_variance=total_var.detach(),
            counts=counts,
        )

    def _auxk_loss(self, xc: Tensor, xn: Tensor, recon: Tensor, dead: Tensor) -> Tensor:
        """AuxK (Gao et al. 2024): the top ``aux_k`` dead features reconstruct the residual.

        With a boolean mask, live features get a pre-activation of ``-inf`` (activation 0, no
        gradient): the top ``aux_k`` of all ``F`` columns, fixed shapes, no host synchronisation.
        """
        if dead.dtype == torch.bool:
            bias = self.b_enc.masked_fill(~dead, float("-inf"))
            w, ai = topk_encode(xc, self.W_enc, bias, self.cfg.aux_k, select=self.arch.topk_select)
            scale = dead.any()  # no dead feature: no loss (the residual is not reconstructed at all)
        else:
            if len(dead) == 0:
                return xn.new_zeros(())
            # pre-activations of the dead features only: O(n d n_dead)
            aux_pre = torch.addmm(self.b_enc[dead].to(xc.dtype), xc, self.W_enc[:, dead].to(xc.dtype))
            av, ai = aux_pre.topk(min(self.cfg.aux_k, len(dead)), dim=-1, sorted=False)
            w, ai, scale = F.relu(av), dead[ai], 1.0
        e_hat = F.embedding_bag(ai, self.W_dec, per_sample_weights=w.to(self.W_dec.dtype), mode="sum")
        return sum_sq_error(e_hat, (xn - recon).detach()) * scale  # same units as `mse`

    # -- training helpers ------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale decoder rows to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(_EPS)

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        """Remove the gradient component parallel to each (unit-norm) decoder row."""
        g = self.W_dec.grad
        if g is not None:
            g -= (g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec

    @torch.no_grad()
    def set_normalization_(self, mean: Tensor, scale: Tensor, b_dec: Tensor | None = None) -> None:
        """Set the input centring/scaling (raw units) and, optionally, the normalised decoder bias."""
        self.input_mean.copy_(torch.as_tensor(mean).to(self.input_mean))
        self.input_scale.copy_(torch.as_tensor(scale).to(self.input_scale).expand(self.input_dim))
        if b_dec is not None:
            self.b_dec.copy_(torch.as_tensor(b_dec).to(self.b_dec))

    @torch.no_grad()
    def rescale_encoder_(self, x: Tensor) -> float:
        """Scale ``W_enc`` so the initial reconstruction of raw rows ``x`` has the least-squares size.

        With tied weights and ``k`` (or many) active features the first reconstruction overshoots
        by about ``k``; activations are linear in the encoder scale, so one factor fixes it.
        """
        xn = self._normalize(self.check_input(x))
        xc = self._encoder_input(xn)
        if self.arch.uses_k:
            acts, idx = topk_encode(xc, self.W_enc, self.b_enc, self.cfg.k)
        else:
            acts, idx = F.relu(torch.addmm(self.b_enc, xc, self.W_enc)), None
        recon = self._decode_normalized(acts, idx) - self.b_dec
        target = xn - self.b_dec
        denom = float(recon.pow(2).sum())
        alpha = float((recon * target).sum()) / denom if denom > 0 else 1.0
        if alpha > 0:
            self.W_enc.mul_(alpha)
        return alpha

    @torch.no_grad()
    def folded_state(self) -> dict[str, Tensor]:
        """Weights with the input normalisation folded in (same activations on raw inputs)."""
        m, s = self.input_mean, self.input_scale
        w_enc = self.W_enc / s[:, None]
        b_enc = self.b_enc.clone()
        if self.arch.pre_bias:
            b_dec = m + s * self.b_dec
        else:
            b_enc = b_enc - m @ w_enc
            b_dec = m + s * self.b_dec
        state = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": self.W_dec * s[None, :], "b_dec": b_dec}
        state.update({name: getattr(self, name) for name in self.arch.state})
        return {k: v.detach().clone().contiguous() for k, v in state.items()}

    @torch.no_grad()
    def fold_normalization_(self) -> None:
        """Fold centring/scaling into the weights; afterwards the model reads raw inputs directly."""
        state = self.folded_state()
        for name in WEIGHT_NAMES:
            getattr(self, name).copy_(state[name])
        self.input_mean.zero_()
        self.input_scale.fill_(1.0)

    @classmethod
    def from_state(cls, cfg: SAEConfig, state: dict[str, Tensor]) -> SparseAutoencoder:
        """Build a model from a config and folded weights (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, ...)."""
        model = cls(cfg, seed=0)
        expected = dict.fromkeys(WEIGHT_NAMES)
        expected.update({"W_enc": (cfg.input_dim, cfg.n_features), "b_enc": (cfg.n_features,)})
        expected.update({"W_dec": (cfg.n_features, cfg.input_dim), "b_dec": (cfg.input_dim,)})
        expected.update(model.arch.state_shapes(cfg))
        missing = [k for k in expected if k not in state]
        if missing:
            msg = f"Stored SAE weights lack {missing}; the saved model is incomplete or of another architecture."
            raise ValueError(msg)
        with torch.no_grad():
            for name, shape in expected.items():
                value = torch.as_tensor(state[name], dtype=torch.float32)
                if tuple(value.shape) != shape:
                    msg = (
                        f"Stored SAE weight {name!r} has shape {tuple(value.shape)} but the config "
                        f"(input_dim={cfg.input_dim}, n_features={cfg.n_features}) needs {shape}."
                    )
                    raise ValueError(msg)
                getattr(model, name).copy_(value)
        return model.eval()

    def extra_repr(self) -> str:
        c = self.cfg
        return f"architecture={c.architecture!r}, input_dim={c.input_dim}, n_features={c.n_features}, k={c.k}"

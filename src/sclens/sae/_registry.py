"""Architecture registry: each SAE variant owns its activation rule, its loss terms and its state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from torch import Tensor

    from ._config import SAEConfig
    from ._model import SparseAutoencoder

_REGISTRY: dict[str, type[Architecture]] = {}


class _TopKEncode(torch.autograd.Function):
    """``ReLU`` of the row-wise top ``m`` of ``x @ W + b`` with a sparse backward pass.

    The gradient of the pre-activations has only ``m`` non-zeros per row, so the backward pass
    scatters ``n * m`` rank-one updates instead of two dense ``(n, F)`` matrix products.
    """

    @staticmethod
    def forward(ctx, x, w, b, m, select):
        pre = torch.addmm(b.to(x.dtype), x, w.to(x.dtype))
        vals, idx = blocked_topk(pre, m) if select == "blocked" else pre.topk(m, dim=-1, sorted=False)
        vals = vals.clamp_min(0)
        ctx.save_for_backward(x, w, idx, vals)
        return vals, idx

    @staticmethod
    def backward(ctx, g_vals, _g_idx):
        x, w, idx, vals = ctx.saved_tensors
        g = (g_vals * (vals > 0)).to(w.dtype)
        xw = x.to(w.dtype)
        flat = idx.flatten()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.embedding_bag(idx, w.t().contiguous(), per_sample_weights=g, mode="sum").to(x.dtype)
        if ctx.needs_input_grad[1]:
            outer = (g[..., None] * xw[:, None, :]).reshape(-1, x.shape[1])
            gw = w.new_zeros(w.shape[1], w.shape[0]).index_add_(0, flat, outer).t()
        if ctx.needs_input_grad[2]:
            gb = w.new_zeros(w.shape[1]).index_add_(0, flat, g.flatten())
        return gx, gw, gb, None, None


TOPK_SELECT = ("full", "blocked")


def blocked_topk(pre: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Return the ``m`` largest entries of each row of ``pre`` (unsorted), selected in two small passes.

    Columns are cut into blocks of ``s`` (a power of two near ``sqrt(F / m)``); the ``m`` blocks
    with the largest maxima hold every one of the row's ``m`` largest entries (a block holding one
    has its maximum at or above the ``m``-th largest value, and at most ``m`` blocks do), so a top
    ``m`` over the blocks' maxima and one over those ``m s`` candidates give the exact values of
    ``pre.topk(m)`` (the same indices unless values tie) with static shapes, instead of a
    selection over all ``F`` columns. Falls back to ``topk`` when blocks would not pay.
    """
    n, f = pre.shape
    size = 1 << max(int(math.log2(max(f / max(m, 1), 1.0)) / 2), 0)
    while f % size:
        size //= 2
    if size < 4 or m * size >= f:
        return pre.topk(m, dim=-1, sorted=False)
    blocks = pre.view(n, f // size, size)
    best = blocks.amax(-1).topk(m, dim=-1, sorted=False).indices
    cand = blocks.gather(1, best[..., None].expand(-1, -1, size)).flatten(1)
    vals, j = cand.topk(m, dim=-1, sorted=False)
    return vals, best.gather(1, torch.div(j, size, rounding_mode="floor")) * size + j % size


def topk_encode(x: Tensor, w: Tensor, b: Tensor, m: int, *, select: str = "full") -> tuple[Tensor, Tensor]:
    """Values (after ReLU) and indices of the ``m`` largest entries of each row of ``x @ w + b``.

    ``select``: ``"full"`` (``torch.topk`` over all columns) or ``"blocked"`` (:func:`blocked_topk`).
    """
    return _TopKEncode.apply(x, w, b, m, select)


def sum_sq_error(recon: Tensor, target: Tensor) -> Tensor:
    """Return summed squared error over a batch divided by its number of rows (float32 even under autocast)."""
    return (recon.float() - target.float()).pow(2).sum() / target.shape[0]


@dataclass(frozen=True)
class ArchitectureConfig:
    """The hyperparameters an architecture owns; each architecture has a subclass with its own fields.

    A subclass is a frozen dataclass whose fields (``float`` or ``int``, each with a default) are
    the architecture's settings, and whose :meth:`check` refuses invalid values. It is the
    ``architecture_options`` of :class:`~sclens.sae.SAEConfig`, saved with the weights as a dict of
    its fields (``cfg.json``, ``adata.uns[key]['params']``).
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(self, f.name, getattr(self, f.name), str(f.type)))
        self.check()

    def check(self) -> None:
        """Raise a ``ValueError`` naming the setting when a value is invalid (none to check here)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (as saved)."""
        return asdict(self)

    @classmethod
    def build(cls, options: ArchitectureConfig | Mapping[str, Any] | None, *, architecture: str) -> ArchitectureConfig:
        """Return the config from an instance, a dict of its fields (unnamed ones: defaults) or ``None``."""
        if isinstance(options, ArchitectureConfig):
            if type(options) is not cls:
                names = sorted(f.name for f in fields(cls)) or "none"
                msg = (
                    f"architecture_options is a {type(options).__name__}; architecture {architecture!r} takes a "
                    f"{cls.__name__} or a dict of its fields ({names})."
                )
                raise ValueError(msg)
            return options
        if options is not None and not isinstance(options, Mapping):
            msg = f"architecture_options must be a {cls.__name__} or a dict, got {type(options).__name__}."
            raise TypeError(msg)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options or {}) - names)
        if unknown:
            msg = (
                f"architecture_options {unknown} are not options of architecture {architecture!r}; "
                f"its options ({cls.__name__}): {sorted(names) or 'none'}."
            )
            raise ValueError(msg)
        return cls(**{k: v.item() if hasattr(v, "item") else v for k, v in (options or {}).items()})

    def _require(self, name: str, rule: str, *, ok: bool) -> None:
        if not ok:
            msg = f"architecture_options[{name!r}] ({type(self).__name__}) must be {rule}, got {getattr(self, name)!r}."
            raise ValueError(msg)


def _coerce(config: ArchitectureConfig, name: str, value: Any, kind: str) -> Any:
    """``value`` as the field's type (``int`` / ``float``; numpy scalars accepted), or a TypeError naming it."""
    value = value.item() if hasattr(value, "item") else value
    ok = {"int": (int,), "float": (int, float)}.get(kind)
    if ok is None:
        return value
    if isinstance(value, bool) or not isinstance(value, ok):
        msg = f"architecture_options[{name!r}] ({type(config).__name__}) must be {kind}, got {value!r}."
        raise TypeError(msg)
    return int(value) if kind == "int" else float(value)


class Architecture:
    """Base class of an SAE variant; subclass it and decorate with :func:`register_architecture`.

    ``activate`` turns the encoder input ``xc`` (``(n, d)``, normalised and, with ``pre_bias``,
    minus ``b_dec``) into either ``(values, indices)`` of shape ``(n, k)`` (compact form, decoded
    by gathering ``k`` decoder rows) or ``(dense, None)`` of shape ``(n, F)``. An architecture
    with its own tensors (thresholds, ...) names them in ``state``, creates them in
    ``init_state`` and gives their shapes in ``state_shapes``; they are saved beside the weights.
    Its own hyperparameters are the fields of its ``config_class`` (an :class:`ArchitectureConfig`),
    read from ``self.config``.
    """

    name: ClassVar[str] = ""
    pre_bias: ClassVar[bool] = True  # encode x - b_dec (pre-encoder bias)
    uses_k: ClassVar[bool] = False
    uses_l1: ClassVar[bool] = False  # `l1_weight` weighs `penalty`
    uses_auxk: ClassVar[bool] = False
    state: ClassVar[tuple[str, ...]] = ()
    capturable: ClassVar[bool] = True  # no per-step state on the host: a training step can be a CUDA graph
    topk_select: str = "full"  # how TopK-like architectures select (`TOPK_SELECT`); set per model by `train_sae`
    #: the class of the architecture's own hyperparameters (``SAEConfig.architecture_options``)
    config_class: ClassVar[type[ArchitectureConfig]] = ArchitectureConfig

    def __init__(self, config: ArchitectureConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    def init_state(self, sae: SparseAutoencoder) -> None:
        """Register the architecture's own buffers / parameters on ``sae``."""

    def state_shapes(self, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors named in ``state``."""
        return {}

    def activate(self, sae: SparseAutoencoder, xc: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def penalty(self, sae: SparseAutoencoder, xc: Tensor, acts: Tensor, idx: Tensor | None) -> Tensor | None:
        """Sparsity penalty per cell (weighted by ``cfg.l1_weight``), or ``None``."""
        return None

    def reconstruction_loss(
        self, sae: SparseAutoencoder, xn: Tensor, acts: Tensor, idx: Tensor | None, recon: Tensor
    ) -> Tensor:
        """Return the reconstruction term of the training loss (default: squared error per cell)."""
        return sum_sq_error(recon, xn)

    def calibrate_(self, sae: SparseAutoencoder, xc: Tensor) -> None:
        """Fix inference-time state from encoder inputs ``xc`` of training cells (after training)."""


def register_architecture(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator adding an :class:`Architecture` subclass to the registry under ``cls.name``.

    Raises a ``ValueError`` when the name is empty or already registered.
    """
    if not cls.name:
        msg = "An architecture needs a non-empty `name` class attribute."
        raise ValueError(msg)
    if cls.name in _REGISTRY:
        msg = (
            f"An SAE architecture named {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__}); "
            "give yours another `name`."
        )
        raise ValueError(msg)
    _REGISTRY[cls.name] = cls
    return cls


def available_architectures() -> list[str]:
    """Names accepted by ``SAEConfig(architecture=...)``."""
    return sorted(_REGISTRY)


def get_architecture(name: str, options: ArchitectureConfig | Mapping[str, Any] | None = None) -> Architecture:
    """Instantiate the registered architecture ``name`` with its config.

    ``options``: an instance of its ``config_class``, a dict of its fields or ``None`` (the
    defaults), checked by :meth:`ArchitectureConfig.build`.
    """
    if name not in _REGISTRY:
        msg = f"Unknown SAE architecture {name!r}; choose one of {available_architectures()}."
        raise ValueError(msg)
    cls = _REGISTRY[name]
    return cls(cls.config_class.build(options, architecture=name))


@dataclass(frozen=True)
class VanillaConfig(ArchitectureConfig):
    """Settings of ``vanilla`` beyond :class:`~sclens.sae.SAEConfig` (none: its sparsity is ``l1_weight``)."""


@dataclass(frozen=True)
class ReLUConfig(VanillaConfig):
    """Settings of ``relu`` beyond :class:`~sclens.sae.SAEConfig` (none: its sparsity is ``l1_weight``)."""


@dataclass(frozen=True)
class TopKConfig(ArchitectureConfig):
    """Settings of ``topk`` beyond :class:`~sclens.sae.SAEConfig` (none: ``k``, ``aux_k`` are shared there)."""


@register_architecture
class Vanilla(Architecture):
    """``z = ReLU(W_enc x + b_enc)``, loss MSE + ``l1_weight * ||z||_1`` (paper eq. 1-3)."""

    name = "vanilla"
    config_class = VanillaConfig
    pre_bias = False
    uses_l1 = True
    l1_by_decoder_norm: ClassVar[bool] = False

    def activate(self, sae, xc):
        return F.relu(torch.addmm(sae.b_enc, xc, sae.W_enc)), None

    def penalty(self, sae, xc, acts, idx):
        w = acts.float()  # ReLU output: >= 0, so the L1 norm needs no abs
        if self.l1_by_decoder_norm:
            w = w * sae.W_dec.norm(dim=1)
        return w.sum() / acts.shape[0]


@register_architecture
class ReLU(Vanilla):
    """Vanilla with the pre-encoder bias (``x - b_dec`` is encoded) and L1 weighted by decoder norms."""

    name = "relu"
    config_class = ReLUConfig
    pre_bias = True
    l1_by_decoder_norm = True


@register_architecture
class TopK(Architecture):
    """Keep the ``k`` largest pre-activations of each cell (Gao et al. 2024), AuxK on dead features."""

    name = "topk"
    config_class = TopKConfig
    uses_k = True
    uses_auxk = True

    def activate(self, sae, xc):
        return topk_encode(xc, sae.W_enc, sae.b_enc, sae.cfg.k, select=self.topk_select)

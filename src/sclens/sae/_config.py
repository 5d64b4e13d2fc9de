"""Configuration of a sparse autoencoder, validated on creation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._registry import ArchitectureConfig

_B_DEC_INIT = ("mean", "median", "zeros")
_SCALE = ("none", "norm", "std")


@dataclass
class SAEConfig:
    """Everything needed to build a :class:`~sclens.sae.SparseAutoencoder`.

    Parameters
    ----------
    input_dim
        Width of the embedding the SAE reads (``d``).
    n_features
        Number of dictionary features (``F``, the SAE hidden size).
    architecture
        Registered architecture name: ``"topk"``, ``"batchtopk"``, ``"matryoshka_batchtopk"``,
        ``"jumprelu"``, ``"relu"``, ``"vanilla"`` or one added with ``register_architecture``
        (:func:`sclens.sae.available_architectures`).
    k
        Active features per cell for ``topk`` (per cell) and ``batchtopk`` (on average over a
        training batch); ignored by ``vanilla`` / ``relu``.
    l1_weight
        Weight of the L1 sparsity penalty of ``vanilla`` / ``relu``.
    aux_k
        Dead features used by the AuxK loss (``topk`` / ``batchtopk``); ``0`` disables it,
        ``None`` picks ``min(n_features // 2, max(2 * k, input_dim))``.
    aux_weight
        Weight of the AuxK loss (Gao et al. 2024 use 1/32).
    dead_steps
        A feature that has not fired for this many training steps counts as dead for AuxK.
    b_dec_init
        Initial decoder bias: ``"mean"`` or ``"median"`` (geometric median) of the training data,
        or ``"zeros"``.
    center
        Subtract the data mean from the input during training.
    scale
        Input scaling during training: ``"none"``, ``"norm"`` (one scalar so that the mean squared
        norm of a centred cell equals ``input_dim``) or ``"std"`` (per dimension). Centring and
        scaling are folded into the weights after training, so the saved model reads raw inputs.
    architecture_options
        The architecture's own hyperparameters: an instance of its config class
        (:class:`~sclens.sae.BatchTopKConfig` ``momentum``, :class:`~sclens.sae.MatryoshkaBatchTopKConfig`
        ``n_prefixes``, :class:`~sclens.sae.JumpReLUConfig` ``bandwidth`` / ``init_threshold``;
        :class:`~sclens.sae.TopKConfig`, :class:`~sclens.sae.ReLUConfig` and
        :class:`~sclens.sae.VanillaConfig` have none) or a dict of its fields; ``None`` or unnamed
        fields take the defaults. Unknown or invalid settings are refused. Kept as the config
        instance and stored with the weights as a dict (``cfg.json``, ``adata.uns[key]['params']``),
        so a reloaded model uses the same values.
    """

    input_dim: int
    n_features: int
    architecture: str = "topk"
    k: int = 32
    l1_weight: float = 1e-3
    aux_k: int | None = None
    aux_weight: float = 1.0 / 32
    dead_steps: int = 100
    b_dec_init: str = "mean"
    center: bool = True
    scale: str = "norm"
    architecture_options: ArchitectureConfig | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        from ._registry import get_architecture

        for name in ("input_dim", "n_features", "k", "dead_steps"):
            value = getattr(self, name)
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                msg = f"SAEConfig.{name} must be an integer, got {value!r}."
                raise TypeError(msg)
            setattr(self, name, int(value))  # numpy integers (e.g. from a grid) become plain ints
        if self.input_dim < 1:
            msg = f"input_dim must be >= 1, got {self.input_dim}: the embedding has no columns."
            raise ValueError(msg)
        if self.n_features < 1:
            msg = f"n_features must be >= 1, got {self.n_features}; pass e.g. `n_features=16 * input_dim`."
            raise ValueError(msg)
        arch = get_architecture(self.architecture, self.architecture_options)  # raises on unknown names / options
        self.architecture_options = arch.config  # the typed config, defaults filled in
        if arch.uses_k and not 1 <= self.k < self.n_features:
            msg = (
                f"k must satisfy 1 <= k < n_features for architecture {self.architecture!r}, got "
                f"k={self.k}, n_features={self.n_features}; lower k or raise n_features."
            )
            raise ValueError(msg)
        for name in ("l1_weight", "aux_weight"):
            if not getattr(self, name) >= 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)!r}."
                raise ValueError(msg)
        if self.aux_k is None:
            self.aux_k = min(self.n_features // 2, max(2 * self.k, self.input_dim)) if arch.uses_k else 0
        if isinstance(self.aux_k, bool | np.bool_) or not isinstance(self.aux_k, int | np.integer) or self.aux_k < 0:
            msg = f"aux_k must be a non-negative integer or None, got {self.aux_k!r}."
            raise ValueError(msg)
        self.aux_k = min(int(self.aux_k), self.n_features)
        self._check_options()
        self.center = bool(self.center)
        self.l1_weight = float(self.l1_weight)
        self.aux_weight = float(self.aux_weight)

    def _check_options(self) -> None:
        if self.dead_steps < 1:
            msg = f"dead_steps must be >= 1, got {self.dead_steps}."
            raise ValueError(msg)
        if self.b_dec_init not in _B_DEC_INIT:
            msg = f"b_dec_init must be one of {_B_DEC_INIT}, got {self.b_dec_init!r}."
            raise ValueError(msg)
        if self.scale not in _SCALE:
            msg = f"scale must be one of {_SCALE}, got {self.scale!r}."
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON and h5ad friendly: no ``None``; ``architecture_options`` as a dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        """Build from a dict, ignoring keys that are not config fields (e.g. training params)."""
        names = {f.name for f in fields(cls)}
        kw = {}
        for key, value in d.items():
            if key in names:
                kw[key] = value.item() if hasattr(value, "item") else value
        missing = {"input_dim", "n_features"} - set(kw)
        if missing:
            msg = f"SAE config lacks required field(s) {sorted(missing)}; the stored SAE is incomplete."
            raise ValueError(msg)
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

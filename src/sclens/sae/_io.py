"""Save and load an SAE as ``cfg.json`` + ``sae.safetensors`` (never unpickles)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._config import SAEConfig
from ._model import SparseAutoencoder

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae.safetensors"
FORMAT = "sclens-sae"
FORMAT_VERSION = 1


def save_sae(model: SparseAutoencoder, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to the directory ``path`` as ``cfg.json`` and ``sae.safetensors``.

    The input normalisation is folded into the saved weights, so the file reads raw inputs.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if (path / CFG_NAME).exists() and not overwrite:
        msg = f"{path / CFG_NAME} exists; pass `overwrite=True` or choose another directory."
        raise FileExistsError(msg)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.cfg.to_dict()}
    (path / CFG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    state = {k: v.cpu() for k, v in model.folded_state().items()}
    save_file(state, str(path / WEIGHTS_NAME), metadata={"format": FORMAT})
    return path


def load_sae(
    path: str | os.PathLike, *, input_dim: int | None = None, device: str | torch.device = "cpu"
) -> SparseAutoencoder:
    """Load an SAE saved by :func:`save_sae` (safetensors only, nothing is unpickled).

    ``input_dim``, when given, is checked against the saved input width.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CFG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        msg = f"{path} is not a saved SAE: expected {CFG_NAME} and {WEIGHTS_NAME} in it (see `save_sae`)."
        raise FileNotFoundError(msg)
    meta = json.loads((path / CFG_NAME).read_text())
    if meta.get("format", FORMAT) != FORMAT:
        msg = f"{path / CFG_NAME} has format {meta.get('format')!r}, expected {FORMAT!r}."
        raise ValueError(msg)
    cfg = SAEConfig.from_dict(meta)
    check_input_dim(cfg, input_dim, what="the data")
    model = SparseAutoencoder.from_state(cfg, load_file(str(path / WEIGHTS_NAME)))
    return model.to(device).eval()


def check_input_dim(cfg_or_model: SAEConfig | SparseAutoencoder, input_dim: int | None, *, what: str) -> None:
    """Raise a ValueError when an SAE of one input width meets data of another."""
    cfg = cfg_or_model.cfg if isinstance(cfg_or_model, SparseAutoencoder) else cfg_or_model
    if input_dim is not None and int(input_dim) != cfg.input_dim:
        msg = (
            f"The SAE was trained on {cfg.input_dim}-dimensional inputs but {what} has {input_dim} "
            "columns; encode the same embedding the SAE was trained on (same model and `use_rep`)."
        )
        raise ValueError(msg)


def to_arrays(model: SparseAutoencoder) -> dict[str, np.ndarray]:
    """Folded weights as float32 numpy arrays (the ``uns[key]['weights']`` layout)."""
    return {k: v.cpu().numpy().astype(np.float32) for k, v in model.folded_state().items()}


def from_arrays(config: dict[str, Any], weights: dict[str, Any]) -> SparseAutoencoder:
    """Rebuild an SAE from a config dict (extra keys ignored) and a dict of weight arrays."""
    cfg = SAEConfig.from_dict(dict(config))
    state = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
    return SparseAutoencoder.from_state(cfg, state)

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
    # the architecture travels with the weights too, so a cfg.json that does not belong to them is caught
    tags = {"format": FORMAT, **{k: json.dumps(meta.get(k)) for k in _ARCH_FIELDS}}
    save_file(state, str(path / WEIGHTS_NAME), metadata=tags)
    return path


def load_sae(
    path: str | os.PathLike, *, input_dim: int | None = None, device: str | torch.device = "cpu"
) -> SparseAutoencoder:
    """Load an SAE saved by :func:`save_sae` (safetensors only, nothing is unpickled).

    ``input_dim``, when given, is checked against the saved input width.
    """
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights_file = path / CFG_NAME, path / WEIGHTS_NAME
    if not cfg_file.is_file() or not weights_file.is_file():
        msg = f"{path} is not a saved SAE: expected {CFG_NAME} and {WEIGHTS_NAME} in it (see `save_sae`)."
        raise FileNotFoundError(msg)
    meta = _read_cfg(cfg_file)
    try:
        cfg = SAEConfig.from_dict(meta)
    except (TypeError, ValueError) as e:
        msg = f"{cfg_file} holds an invalid SAE config ({e}); the file is damaged: re-save the SAE with `save_sae`."
        raise ValueError(msg) from e
    check_input_dim(cfg, input_dim, what="the data")
    try:
        state = load_file(str(weights_file))
        tags = _safe_metadata(weights_file)
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on damaged files
        msg = (
            f"{weights_file} is damaged, truncated or not a safetensors file ({type(e).__name__}: {e}); "
            "re-save the SAE with `save_sae`."
        )
        raise ValueError(msg) from e
    for field in _ARCH_FIELDS:
        if field in tags and json.loads(tags[field]) != meta.get(field):
            msg = (
                f"{cfg_file} says {field}={meta.get(field)!r} but {weights_file} was saved from an SAE with "
                f"{field}={json.loads(tags[field])!r}: the config does not belong to these weights. Restore the "
                "original cfg.json or re-save the SAE with `save_sae`."
            )
            raise ValueError(msg)
    check_state(cfg, state, source=str(weights_file))
    model = SparseAutoencoder.from_state(cfg, state)
    return model.to(device).eval()


_ARCH_FIELDS = ("architecture", "k", "input_dim", "n_features")


def _read_cfg(cfg_file: Path) -> dict[str, Any]:
    if cfg_file.stat().st_size > 1 << 20:  # a config is a few hundred bytes
        msg = f"{cfg_file} is damaged: {cfg_file.stat().st_size:,} bytes, not an SAE config. Re-save the SAE."
        raise ValueError(msg)
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        msg = f"{cfg_file} is damaged: not valid JSON ({e}). Re-save the SAE with `save_sae`."
        raise ValueError(msg) from e
    if not isinstance(meta, dict):
        msg = f"{cfg_file} is damaged: expected a JSON object, got {type(meta).__name__}. Re-save the SAE."
        raise ValueError(msg)
    if meta.get("format", FORMAT) != FORMAT:
        msg = f"{cfg_file} has format {meta.get('format')!r}, expected {FORMAT!r}."
        raise ValueError(msg)
    return meta


def _safe_metadata(weights_file: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(weights_file), framework="pt") as fh:
        return dict(fh.metadata() or {})


def check_state(cfg: SAEConfig, state: dict[str, Any], *, source: str) -> None:
    """Refuse weights that do not fit the architecture (unexpected tensors) or are not finite."""
    from ._registry import get_architecture

    expected = {"W_enc", "b_enc", "W_dec", "b_dec", *get_architecture(cfg.architecture).state}
    extra = sorted(set(state) - expected)
    if extra:
        msg = (
            f"{source} holds {extra}, which a {cfg.architecture!r} SAE does not have: the weights come from "
            "another architecture than the config says. Use the config saved with these weights."
        )
        raise ValueError(msg)
    for name, value in state.items():
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float64)
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        if bad:
            msg = (
                f"{source}: weight {name!r} holds {bad} NaN or infinite value(s); the weights are damaged "
                "(or training diverged). Refit the SAE (e.g. with a lower `lr`) or restore the saved weights."
            )
            raise ValueError(msg)


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


def from_arrays(config: dict[str, Any], weights: dict[str, Any], *, source: str = "the weights") -> SparseAutoencoder:
    """Rebuild an SAE from a config dict (extra keys ignored) and a dict of weight arrays.

    The weights are checked with :func:`check_state`; ``source`` names them in errors.
    """
    cfg = SAEConfig.from_dict(dict(config))
    try:
        arrays = {k: np.asarray(v) for k, v in weights.items()}
    except (TypeError, ValueError) as e:  # ragged lists
        arrays, bad = {}, str(e)
    else:  # text is refused even when it parses as numbers
        bad = ", ".join(f"{k}: {a.dtype}" for k, a in arrays.items() if a.dtype.kind not in "fiu")
    if bad:
        msg = f"{source} must be numeric arrays ({bad}); the stored SAE is damaged. Refit it with `sl.tl.fit_sae`."
        raise ValueError(msg)
    state = {k: torch.as_tensor(a.astype(np.float32)) for k, a in arrays.items()}
    check_state(cfg, state, source=source)
    return SparseAutoencoder.from_state(cfg, state)

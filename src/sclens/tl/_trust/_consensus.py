"""Consensus features: the features that several seeds reproduce, averaged over the seeds into one SAE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# weights whose feature axis is known by name; other arrays of length n_features are per feature too
_FEATURE_AXIS = {"W_enc": 1, "b_enc": 0, "W_dec": 0}
_SHARED = ("b_dec",)


def _unit(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return w / np.where(norm > 0, norm, 1.0)


def _feature_axis(name: str, array: np.ndarray, n_features: int) -> int | None:
    if name in _FEATURE_AXIS:
        return _FEATURE_AXIS[name]
    if name in _SHARED or array.ndim != 1 or array.shape[0] != n_features:
        return None
    return 0


def consensus_weights(
    runs: Sequence[Mapping[str, np.ndarray]],
    matched: np.ndarray,
    cosine: np.ndarray,
    keep: np.ndarray,
    threshold: float,
) -> dict[str, np.ndarray]:
    """Average the weights of the kept features over the runs that reproduce them.

    ``runs[0]`` is the reference run's folded weights, ``runs[1:]`` the refits'; ``matched`` /
    ``cosine``: reference features x refits, the matched refit feature and its ``|cosine|``. Each kept
    reference feature is averaged with its matches at ``|cosine| >= threshold`` (encoder column,
    encoder bias, decoder row and any other per-feature array); arrays that are not per feature
    (``b_dec``, a global threshold) are averaged over all runs. Decoder rows are put back to unit
    length, the encoder scaled by the same factor, so that reconstructions keep their scale.
    """
    ref = runs[0]
    n_features = ref["W_dec"].shape[0]
    keep = np.flatnonzero(keep)
    unit = [_unit(r["W_dec"]) for r in runs]
    dots = [np.einsum("fd,fd->f", unit[0][keep], u[matched[keep, j]]) for j, u in enumerate(unit[1:])]
    same_sign = np.stack(dots, axis=1) > 0
    out: dict[str, np.ndarray] = {}
    for name, value in ref.items():
        axis = _feature_axis(name, np.asarray(value), n_features)
        if axis is None:
            out[name] = np.mean([np.asarray(r[name], dtype=np.float64) for r in runs], axis=0)
            continue
        total = np.take(np.asarray(value, dtype=np.float64), keep, axis=axis)
        count = np.ones(keep.size)
        for j, other in enumerate(runs[1:]):
            use = (cosine[keep, j] >= threshold) & same_sign[:, j]  # a direction, not its opposite
            part = np.take(np.asarray(other[name], dtype=np.float64), np.where(use, matched[keep, j], 0), axis=axis)
            shape = [1] * part.ndim
            shape[axis] = keep.size
            total = total + part * use.reshape(shape)
            count = count + use
        shape = [1] * total.ndim
        shape[axis] = keep.size
        out[name] = total / count.reshape(shape)
    norm = np.linalg.norm(out["W_dec"], axis=1)
    norm = np.where(norm > 0, norm, 1.0)
    out["W_dec"] = out["W_dec"] / norm[:, None]
    out["W_enc"] = out["W_enc"] * norm[None, :]
    out["b_enc"] = out["b_enc"] * norm
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}

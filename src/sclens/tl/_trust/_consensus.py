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
    (``b_dec``, a global threshold) are averaged over all runs. Averaging decoder rows that point in
    slightly different directions shortens them, so each averaged row is put back to the mean length
    of the rows it averages. The encoder is not rescaled: activations keep the runs' scale, the one
    their thresholds (BatchTopK's, JumpReLU's) are in. Folded decoder rows are not unit length (they
    carry the input scale), so the length is the runs', not 1.
    """
    ref = runs[0]
    n_features = ref["W_dec"].shape[0]
    keep = np.flatnonzero(keep)
    unit = [_unit(r["W_dec"]) for r in runs]
    dots = [np.einsum("fd,fd->f", unit[0][keep], u[matched[keep, j]]) for j, u in enumerate(unit[1:])]
    same_sign = np.stack(dots, axis=1) > 0
    use = (cosine[keep] >= threshold) & same_sign  # kept features x refits: a direction, not its opposite
    rows = np.where(use, matched[keep], 0)

    def average(arrays: list[np.ndarray], axis: int) -> np.ndarray:
        total = np.take(np.asarray(arrays[0], dtype=np.float64), keep, axis=axis)
        shape = [1] * total.ndim
        shape[axis] = keep.size
        for j, other in enumerate(arrays[1:]):
            part = np.take(np.asarray(other, dtype=np.float64), rows[:, j], axis=axis)
            total = total + part * use[:, j].reshape(shape)
        return total / (1 + use.sum(axis=1)).reshape(shape)

    out: dict[str, np.ndarray] = {}
    for name, value in ref.items():
        axis = _feature_axis(name, np.asarray(value), n_features)
        if axis is None:
            out[name] = np.mean([np.asarray(r[name], dtype=np.float64) for r in runs], axis=0)
        else:
            out[name] = average([r[name] for r in runs], axis)
    length = average([np.linalg.norm(np.asarray(r["W_dec"], dtype=np.float64), axis=1) for r in runs], 0)
    norm = np.linalg.norm(out["W_dec"], axis=1)
    out["W_dec"] = out["W_dec"] * np.divide(length, norm, out=np.ones_like(norm), where=norm > 0)[:, None]
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}

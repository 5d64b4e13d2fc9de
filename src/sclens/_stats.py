"""Statistics shared by several tools (one implementation each)."""

from __future__ import annotations

import numpy as np


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along the last axis, ignoring NaN (kept as NaN).

    A 1-d input gives a ``(1, m)`` result; ``fdr_bh(p).ravel()`` adjusts a flat array.
    """
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    nan = np.isnan(p)
    m = (~nan).sum(axis=1, keepdims=True)
    order = np.argsort(np.where(nan, np.inf, p), axis=1, kind="stable")
    ps = np.take_along_axis(np.where(nan, np.inf, p), order, axis=1)
    rank = np.arange(1, p.shape[1] + 1)[None, :]
    q = ps * m / rank
    q = np.minimum.accumulate(q[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(q)
    np.put_along_axis(out, order, np.minimum(q, 1.0), axis=1)
    out[nan] = np.nan
    return out

"""The one rule for ``features=``: which SAE features a call works on.

* ``None``: every live feature, i.e. every feature active in at least one cell of ``adata``
  (the features table's ``kind`` says the same: ``"dead"`` is "never active"); no live feature is
  an error.
* One feature number or a non-empty sequence of them: integers (not booleans, not strings), each
  within ``0 .. n_features - 1`` and given once; their order is kept.

Whether an explicitly named dead feature is allowed is the caller's choice (annotation needs
active cells; steering may ``add`` a dead feature; a plot may show one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import sparse


def live_features(acts: Any) -> np.ndarray:
    """Return a boolean mask over features: active (non-zero) in at least one cell of ``acts`` (cells x features)."""
    csc = sparse.csc_matrix(acts)
    csc.eliminate_zeros()
    return np.diff(csc.indptr) > 0


def resolve_features(features: Any, n_features: int | None, *, live: np.ndarray | None = None) -> np.ndarray:
    """Return ``features`` as an int64 array by the rule above.

    ``live``: the mask of live features, needed for ``None``; ``n_features=None``: the range is
    checked by the caller (e.g. against the features an annotation covered).
    """
    if features is None:
        if live is None:  # the caller has no default: features must be given
            msg = "features=None is not accepted here; pass a feature number or a sequence of them."
            raise TypeError(msg)
        out = np.flatnonzero(live).astype(np.int64)
        if out.size == 0:
            msg = f"All {n_features} features are dead (never active in these cells); there is nothing to work on."
            raise ValueError(msg)
        return out
    values = [features] if isinstance(features, (int, np.integer)) else features
    if isinstance(features, (bool, np.bool_, str)) or not isinstance(values, Iterable):
        msg = f"features must be a feature number (an integer) or a sequence of them, got {features!r}."
        raise TypeError(msg)
    values = list(np.asarray(values).ravel()) if isinstance(values, np.ndarray) else list(values)
    if not values:
        msg = "features is empty; pass at least one feature number, or None for every live feature."
        raise ValueError(msg)
    if any(isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)) for f in values):
        msg = f"features must be a feature number (an integer) or a sequence of them, got {features!r}."
        raise TypeError(msg)
    out = np.asarray(values, dtype=np.int64)
    bad = out[(out < 0) | (out >= (n_features if n_features is not None else np.iinfo(np.int64).max))]
    if bad.size:
        size = f"this SAE has {n_features} features (0..{n_features - 1})" if n_features else "features are >= 0"
        msg = f"feature {int(bad[0])} is out of range: {size}."
        raise ValueError(msg)
    if np.unique(out).size != out.size:
        msg = f"features has duplicates: {out.tolist()}; give each feature once."
        raise ValueError(msg)
    return out


def check_live(features: np.ndarray, live: np.ndarray) -> None:
    """Refuse features that are dead (never active in these cells)."""
    dead = [int(f) for f in features if not live[f]]
    if dead:
        msg = f"Feature(s) {dead} are dead (never active in these cells); leave them out of `features`."
        raise ValueError(msg)

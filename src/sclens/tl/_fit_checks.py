"""Input checks of ``fit_sae`` / ``encode``: embedding shape, type, spread and range; keys; fit quality."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._utils import as_dense_float32
from .._warnings import SclensWarning


def check_embedding(x: Any, use_rep: str) -> None:
    if x.shape[0] < 2:
        msg = (
            f"`obsm[{use_rep!r}]` has {x.shape[0]} row(s); an SAE needs at least 2 cells "
            "(in practice thousands). Check that `adata` is not an empty subset."
        )
        raise ValueError(msg)
    if x.shape[1] < 1:
        msg = f"`obsm[{use_rep!r}]` has no columns; compute the embedding first."
        raise ValueError(msg)
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)):
        msg = f"`obsm[{use_rep!r}]` has dtype {dtype}; an SAE needs a real-valued (int or float) embedding."
        raise TypeError(msg)


_F32 = np.finfo(np.float32)
_MAX_MAGNITUDE = float(_F32.max) / 4  # centring and the decoder's output must stay finite in float32


def _rows64(x: Any, start: int, stop: int, use_rep: str) -> np.ndarray:
    rows = x[start:stop]
    rows = rows.toarray() if hasattr(rows, "toarray") else rows.compute() if hasattr(rows, "compute") else rows
    rows = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(rows).all():
        as_dense_float32(rows, name=f"`obsm[{use_rep!r}]`")  # raises the NaN / inf error
    return rows


def check_spread(x: Any, use_rep: str, *, n_blocks: int = 8, block: int = 1024) -> None:
    """Refuse an embedding that is constant or that float32 cannot represent; any other scale is fine.

    Training normalises the input (:class:`sclens.sae.SAEConfig` ``center`` / ``scale``), so an
    embedding at scale 1e-30 or 1e30 trains as well as one at unit scale. Looks at up to ``n_blocks``
    evenly spaced blocks of ``block`` rows (aligned row slices, as the encoding reads them, so
    backed data stays on disk).
    """
    n = int(x.shape[0])
    chunks = np.unique(np.linspace(0, (n - 1) // block, n_blocks).astype(int))
    sample = np.vstack([_rows64(x, c * block, min((c + 1) * block, n), use_rep) for c in chunks])
    scale = float(np.abs(sample).max())
    if scale > _MAX_MAGNITUDE:
        msg = (
            f"`obsm[{use_rep!r}]` has values up to {scale:.3g}, beyond what float32 training can hold "
            f"(about {_MAX_MAGNITUDE:.2g}); rescale it, e.g. `adata.obsm[{use_rep!r}] = X / np.abs(X).max()`."
        )
        raise ValueError(msg)
    spread = float(sample.astype(np.float32).astype(np.float64).std(axis=0).max())
    if spread == 0:
        msg = (
            f"`obsm[{use_rep!r}]` is constant (every cell has the same values, in float32): an SAE has nothing "
            "to learn and every feature would be dead. Check that `use_rep` names the embedding you meant."
        )
        raise ValueError(msg)
    if spread < _F32.tiny:
        msg = (
            f"`obsm[{use_rep!r}]` varies by at most {spread:.3g}, below float32's smallest normal number "
            f"({_F32.tiny:.3g}); rescale it, e.g. `adata.obsm[{use_rep!r}] = X / X.std()`."
        )
        raise ValueError(msg)


def warn_bad_fit(fvu: float, n_live: int, n_features: int) -> None:
    if not np.isfinite(fvu) or fvu > 1 or n_live == 0:
        warnings.warn(
            f"The SAE fit is poor: FVU {fvu:.3g}, {n_live} of {n_features} features live. Check the embedding "
            "(scale, constant columns), or train longer / raise `lr` / lower `k`.",
            SclensWarning,
            stacklevel=3,
        )


def check_key(key: Any, name: str) -> None:
    if not isinstance(key, str) or not key or "/" in key:
        msg = f"{name} must be a non-empty string without '/' (it names `obsm['X_<key>']` and `uns[key]`), got {key!r}."
        raise ValueError(msg)

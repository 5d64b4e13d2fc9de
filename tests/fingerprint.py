"""A content hash of an AnnData (or MuData), to show that a failed or interrupted call changed nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` (arrays, sparse, frames, mappings, scalars) into ``h``, type and shape included."""
    h.update(type(value).__name__.encode())
    if isinstance(value, Mapping):
        for k in sorted(value, key=str):
            h.update(f"<{k}>".encode())
            _feed(h, value[k])
    elif isinstance(value, pd.DataFrame):
        h.update(repr((list(value.columns), [str(t) for t in value.dtypes], value.shape)).encode())
        _feed(h, value.index)
        for col in value.columns:
            _feed(h, value[col])
    elif isinstance(value, (pd.Series, pd.Index)):
        h.update(str(value.dtype).encode())
        if isinstance(value.dtype, pd.CategoricalDtype):
            h.update(repr(list(value.dtype.categories)).encode())
        h.update(pd.util.hash_pandas_object(pd.Series(np.asarray(value, dtype=object)), index=False).to_numpy())
    elif sparse.issparse(value):
        m = value.tocsr()
        h.update(repr((m.shape, str(m.dtype))).encode())
        for part in (m.data, m.indices, m.indptr):
            h.update(np.ascontiguousarray(part).tobytes())
    elif hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy, h5py / backed datasets, dask
        arr = np.asarray(value[()] if not hasattr(value, "compute") else value.compute())
        h.update(repr((arr.shape, str(arr.dtype))).encode())
        h.update(arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode())
    elif isinstance(value, (list, tuple)):
        for v in value:
            _feed(h, v)
    else:
        h.update(repr(value).encode())


def fingerprint(adata: Any) -> str:
    """SHA-256 of X, layers, obs, var, obsm, varm, obsp, uns (and each modality of a MuData)."""
    h = hashlib.sha256()
    if hasattr(adata, "mod"):
        for name in sorted(adata.mod):
            h.update(f"mod:{name}".encode())
            h.update(fingerprint(adata.mod[name]).encode())
    else:
        _feed(h, adata.X)
        _feed(h, dict(adata.layers))
        _feed(h, adata.var)
        _feed(h, dict(adata.varm))
        _feed(h, dict(adata.obsp))
    _feed(h, adata.obs)
    _feed(h, dict(adata.obsm))
    _feed(h, dict(adata.uns))
    return h.hexdigest()


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes, or ``None`` when it does not exist."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None

"""The cell side of :func:`sclens.pl.atlas`'s payload: sampled cells, their coordinates, groups, activations.

Arrays travel base64-encoded: embedding coordinates quantised to 16 bits, group codes as ``uint16``,
activations of the shown cells stored sparsely per feature (cell index ``uint16``, value quantised
to 8 bits of the feature's maximum). The feature side is in :mod:`sclens.pl._atlas_features`.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

MAX_CELLS = 65535  # cell indices travel as uint16
MAX_GROUPS = 30  # groups coloured on the card; the smallest others are pooled as "other"
NO_GROUP = 65535  # code of a cell without a group (NaN)


def b64(a: np.ndarray) -> str:
    """Little-endian bytes of ``a`` as base64 text."""
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def round_(x: Any, digits: int = 4) -> float | None:
    """``x`` as a float with ``digits`` significant digits; ``None`` for NaN / infinite."""
    x = float(x)
    if not np.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def sample_cells(n_obs: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of at most ``max_cells`` cell indices."""
    if n_obs <= max_cells:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, size=max_cells, replace=False))


def basis_key(adata: AnnData, basis: str) -> str:
    """Return the obsm key of ``basis`` (itself or ``X_<basis>``) after checking it holds 2-D coordinates."""
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        msg = (
            f"`adata.obsm[{key!r}]` not found; available: {list(adata.obsm.keys())}. "
            "Compute it first, e.g. `sc.pp.neighbors(adata, use_rep='X_scVI'); sc.tl.umap(adata)`, or pass `basis=`."
        )
        raise KeyError(msg)
    shape = np.shape(adata.obsm[key])
    if len(shape) != 2 or shape[1] < 2:
        msg = (
            f"`adata.obsm[{key!r}]` has shape {shape}; the atlas draws two coordinates per cell. "
            "Pass a 2-D embedding as `basis=` (e.g. 'umap' after `sc.tl.umap(adata)`)."
        )
        raise ValueError(msg)
    return key


def embedding(adata: AnnData, key: str, cells: np.ndarray) -> dict[str, Any]:
    """First two coordinates of ``cells`` in ``obsm[key]`` (see :func:`basis_key`), quantised to uint16."""
    xy = np.asarray(adata.obsm[key])[cells, :2].astype(np.float64)
    if not np.isfinite(xy).all():
        msg = f"`adata.obsm[{key!r}]` holds NaN or infinite coordinates; recompute the embedding."
        raise ValueError(msg)
    lo, hi = xy.min(0), xy.max(0)
    q = np.rint((xy - lo) / np.where(hi > lo, hi - lo, 1.0) * 65535).astype(np.uint16)
    return {"x": b64(q[:, 0]), "y": b64(q[:, 1]), "n": int(cells.size), "basis": key}


def _palette(adata: AnnData, groupby: str, categories: list[str], keep: np.ndarray) -> list[str]:
    """Colours of ``categories[keep]``: scanpy's ``uns[f"{groupby}_colors"]`` when it matches, else tab10 / tab20."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    stored = adata.uns.get(f"{groupby}_colors")
    if stored is not None and len(stored) == len(categories):
        return [to_hex(stored[i]) for i in keep]
    names = ["tab10"] if keep.size <= 10 else ["tab20", "tab20b"]
    colors = [to_hex(c) for name in names for c in colormaps[name].colors]
    return [colors[i % len(colors)] for i in range(keep.size)]


def groups(adata: AnnData, groupby: str | None, cells: np.ndarray) -> dict[str, Any]:
    """Group code (``uint16``, :data:`NO_GROUP` for none) of each shown cell, group names and colours."""
    if groupby is None:
        return {"by": "", "names": [], "colors": [], "code": ""}
    if groupby not in adata.obs.columns:
        msg = f"groupby={groupby!r} is not a column of adata.obs; available: {list(adata.obs.columns)}."
        raise KeyError(msg)
    col = adata.obs[groupby]
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype(str).where(col.notna()).astype("category")
    categories = [str(c) for c in cat.cat.categories]
    codes = cat.cat.codes.to_numpy()[cells].astype(np.int64)
    sizes = np.bincount(codes[codes >= 0], minlength=len(categories))
    keep = np.arange(len(categories))
    if len(categories) > MAX_GROUPS:  # the largest MAX_GROUPS - 1 groups, then "other"
        keep = np.sort(np.argsort(-sizes, kind="stable")[: MAX_GROUPS - 1])
        remap = np.full(len(categories), keep.size, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    pooled = keep.size < len(categories)
    names = [categories[i] for i in keep] + ["other"] * pooled
    colors = _palette(adata, groupby, categories, keep) + ["#9e9e9e"] * pooled
    code = np.where(codes >= 0, codes, NO_GROUP).astype(np.uint16)
    return {"by": groupby, "names": names, "colors": colors, "code": b64(code)}


def activations(acts: sparse.csr_matrix, cells: np.ndarray, features: np.ndarray) -> dict[str, Any]:
    """Non-zero ``acts`` (cells x features) of ``features`` on ``cells``: indices / 8-bit values and offsets."""
    act = acts[cells][:, features].tocsc()
    act.sort_indices()
    vmax = act.max(axis=0).toarray().ravel().astype(np.float64)  # activations are non-negative
    per_entry = np.repeat(np.where(vmax > 0, vmax, 1.0), np.diff(act.indptr))
    vals = np.clip(np.rint(act.data / per_entry * 255), 1, 255).astype(np.uint8)
    return {
        "idx": b64(act.indices.astype(np.uint16)),
        "val": b64(vals),
        "ptr": act.indptr.astype(int).tolist(),
        "max": [round_(v) for v in vmax],
    }

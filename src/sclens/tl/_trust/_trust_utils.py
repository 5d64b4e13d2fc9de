"""Small helpers shared by the trust tools (alignment, null controls, baselines, run comparison)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._utils import group_labels


def obs_codes(adata: AnnData, column: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 = missing) and category names of ``adata.obs[column]`` (at least 2 categories)."""
    cat, _ = group_labels(adata, column)
    names = [str(c) for c in cat.cat.categories]
    if len(names) < 2:
        msg = f"`adata.obs[{column!r}]` has {len(names)} category; alignment needs a column with 2 or more."
        raise ValueError(msg)
    return cat.cat.codes.to_numpy().astype(np.int64), names


def as_list(value: str | Any, name: str) -> list[str]:
    """One string or a sequence of strings as a list (no duplicates), with a TypeError otherwise."""
    if isinstance(value, str):
        return [value]
    if value is None:
        return []
    out = list(dict.fromkeys(value))
    if not all(isinstance(v, str) for v in out):
        msg = f"{name} must be a string or a list of strings, got {value!r}."
        raise TypeError(msg)
    return out


def features_table(run: dict, n_features: int) -> pd.DataFrame:
    """Return the run's features table, or an empty one indexed ``"0"`` .. ``"F-1"``."""
    table = run.get("features")
    if isinstance(table, pd.DataFrame):
        return table
    return pd.DataFrame(index=pd.Index([str(i) for i in range(n_features)]))

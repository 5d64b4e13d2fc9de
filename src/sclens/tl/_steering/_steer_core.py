"""Shared steps of the steering tools: choose cells, change SAE codes, move embeddings, decode.

Every steering tool changes the SAE code ``z`` of a cell to ``z'`` and moves its embedding by the
decoder image of the change only, ``x' = x + (z' - z) W_dec``, so each cell keeps its SAE
reconstruction error (the "error-preserving decode").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ... import _provenance as provenance
from ..._readers import sae_run
from ..._utils import as_dense_float32, get_rep, sae_activations
from .._annotation._cellsets import obs_mask

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
MODES = ("set", "add", "knockout")


@dataclass
class SAERun:
    """What steering reads from an SAE run: activations, decoder, input embedding."""

    act: sparse.csr_matrix
    w_dec: np.ndarray
    use_rep: str
    run_id: str | None

    @property
    def n_features(self) -> int:
        return self.act.shape[1]

    def embedding(self, adata: AnnData, idx: np.ndarray | None = None) -> np.ndarray:
        x = get_rep(adata, self.use_rep)
        x = x if idx is None else x[idx]
        return as_dense_float32(x).astype(np.float64)


def steer_run(adata: AnnData, sae_key: str) -> SAERun:
    """Activations, decoder weights and input embedding name of the SAE run ``sae_key`` (checked)."""
    if adata.n_obs == 0:
        msg = "adata has no cells; steering needs the cells whose activations it changes."
        raise ValueError(msg)
    act = sae_activations(adata, sae_key)
    run = sae_run(adata, sae_key, need=(), arrays=("W_dec",))
    w_dec = np.asarray(run["weights"]["W_dec"], dtype=np.float64)
    use_rep = str(run.get("params", {}).get("use_rep", ""))
    dim = get_rep(adata, use_rep).shape[1]
    if w_dec.shape != (act.shape[1], dim):
        msg = f"W_dec has shape {w_dec.shape}, expected ({act.shape[1]}, {dim}) for `obsm[{use_rep!r}]`."
        raise ValueError(msg)
    return SAERun(act, w_dec, use_rep, provenance.run_id(adata, sae_key))


def select_cells(adata: AnnData, cells: Any, *, name: str = "cells") -> np.ndarray:
    """Integer positions of the cells chosen by ``cells`` (``name``: the argument, for messages).

    ``None`` (all), a mapping ``{obs column: value or values}``, a boolean mask or cell names.
    """
    if cells is None:
        idx = np.arange(adata.n_obs)
    elif isinstance(cells, Mapping):
        idx = np.flatnonzero(obs_mask(adata, cells, name=name))
    else:
        arr = np.asarray(cells)
        if arr.dtype == bool:
            if arr.shape != (adata.n_obs,):
                msg = f"A boolean `{name}` mask must have length n_obs={adata.n_obs}, got shape {arr.shape}."
                raise ValueError(msg)
            idx = np.flatnonzero(arr)
        else:
            pos = adata.obs_names.get_indexer(arr.astype(str))
            if (pos < 0).any():
                missing = list(arr[pos < 0][:5])
                msg = f"{int((pos < 0).sum())} cell name(s) in `{name}` not in adata.obs_names, e.g. {missing}."
                raise KeyError(msg)
            idx = pos
    if idx.size == 0:
        msg = f"`{name}={cells!r}` selects no cell; check the obs column and its values."
        raise ValueError(msg)
    return idx


def per_feature(arg: Any, n: int, name: str) -> list[Any]:
    """Broadcast one value to ``n`` features, or check a list / tuple / array has one per feature."""
    if isinstance(arg, (list, tuple, np.ndarray, pd.Series)):
        vals = list(arg)
        if len(vals) != n:
            msg = f"{name} has {len(vals)} entries but {n} feature(s) are steered; give one value or one per feature."
            raise ValueError(msg)
        return vals
    return [arg] * n


def resolve_amount(adata: AnnData, column: np.ndarray, value: Any, factor: float, mode: str) -> float:
    """Return the activation a feature is set to (``"set"``), the amount added (``"add"``) or 0 (``"knockout"``)."""
    if mode not in MODES:
        msg = f"mode must be one of {list(MODES)}, got {mode!r}."
        raise ValueError(msg)
    if mode == "knockout":
        return 0.0
    if isinstance(value, str) and value == "max":
        amount = float(column.max())
    elif isinstance(value, str) and _PERCENTILE.match(value):
        q = float(_PERCENTILE.match(value).group(1))
        if q > 100:
            msg = f"Percentile {value!r} must be between p0 and p100."
            raise ValueError(msg)
        amount = float(np.percentile(column[column > 0], q))
    elif isinstance(value, Mapping):
        amount = float(column[select_cells(adata, value, name="value")].mean())
    elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        amount = float(value)
    else:
        msg = (
            f"value must be 'max', a percentile such as 'p99', a number, or a mapping selecting a group "
            f"whose mean is used (e.g. {{'cell_type': 'Normoblast'}}), got {value!r}."
        )
        raise ValueError(msg)
    amount *= float(factor)
    if not np.isfinite(amount) or (mode == "set" and amount < 0):
        what = "target activation must be a finite number >= 0" if mode == "set" else "amount must be finite"
        msg = f"The {what}, got {amount} (value={value!r}, factor={factor})."
        raise ValueError(msg)
    return amount


def new_columns(old: np.ndarray, modes: Sequence[str], amounts: Sequence[float]) -> np.ndarray:
    """Return the new activations of the steered columns ``old`` (cells x features) by their modes and amounts."""
    new = np.empty_like(old)
    for j, (mode, amount) in enumerate(zip(modes, amounts, strict=True)):
        if mode == "set":
            new[:, j] = amount
        elif mode == "add":
            new[:, j] = np.maximum(old[:, j] + amount, 0.0)
        else:
            new[:, j] = 0.0
    return new


def change_codes(
    z: sparse.csr_matrix, features: np.ndarray, modes: Sequence[str], amounts: Sequence[float]
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Return new codes (CSR, never densified) and the change of the steered columns (cells x len(features)).

    ``"set"``: the feature becomes ``amount``; ``"add"``: ``max(z + amount, 0)`` (codes are
    non-negative); ``"knockout"``: 0.
    """
    old = np.asarray(z[:, features].toarray(), dtype=np.float64)
    new = new_columns(old, modes, amounts)
    keep = np.ones(z.shape[1], dtype=np.float32)
    keep[features] = 0.0
    cols = sparse.csr_matrix(new.astype(np.float32))
    placed = sparse.csr_matrix((cols.data, features[cols.indices], cols.indptr), shape=z.shape)
    z_new = (z @ sparse.diags(keep) + placed).tocsr()
    z_new.eliminate_zeros()
    return z_new, new - old


def decode_pair(
    adata: AnnData,
    idx: np.ndarray,
    embeddings: Sequence[np.ndarray],
    *,
    model: Any,
    decode: Callable[[np.ndarray, AnnData], np.ndarray] | None,
    library_size: float | None,
    batch_size: int,
) -> tuple[list[np.ndarray] | None, str]:
    """Expression of each embedding of the cells ``idx`` through ``model`` or ``decode`` (or ``None``)."""
    if model is not None:
        from ..._scvi import decode_scvi, scvi_cell_inputs

        inputs = scvi_cell_inputs(model, adata, idx, batch_size=batch_size)
        expr = [decode_scvi(model, e, inputs, library_size=library_size, batch_size=batch_size) for e in embeddings]
        return expr, "scvi"
    if decode is None:
        return None, "none"
    cells = adata[idx]
    expr = [np.asarray(decode(e, cells), dtype=np.float32) for e in embeddings]
    for e in expr:
        if e.shape != (idx.size, adata.n_vars):
            msg = f"decode returned shape {e.shape}, expected ({idx.size}, {adata.n_vars}) (cells x genes)."
            raise ValueError(msg)
    return expr, "callable"


def check_decoder(adata: AnnData, model: Any, decode: Any) -> None:
    """Reject ``model`` and ``decode`` together and a model that does not fit ``adata``."""
    if model is not None and decode is not None:
        msg = "Pass either `model` or `decode`, not both."
        raise ValueError(msg)
    if model is not None:
        from ..._scvi import check_scvi_model

        check_scvi_model(model, adata)


def paired_result(
    adata: AnnData,
    idx: np.ndarray,
    *,
    x: np.ndarray,
    x_new: np.ndarray,
    z: sparse.csr_matrix,
    z_new: sparse.csr_matrix,
    expr: list[np.ndarray] | None,
    decoder: str,
    library_size: float | None,
    use_rep: str,
    sae_key: str,
) -> AnnData:
    """Two rows per steered cell (``obs['condition']`` normal / perturbed) with embeddings, codes, expression."""
    names = adata.obs_names[idx]
    obs = pd.concat([adata.obs.iloc[idx]] * 2)
    obs["cell"] = np.concatenate([names, names])
    obs["condition"] = pd.Categorical(["normal"] * idx.size + ["perturbed"] * idx.size, ["normal", "perturbed"])
    obs.index = [f"{n}_normal" for n in names] + [f"{n}_perturbed" for n in names]
    out = AnnData(
        X=None if expr is None else np.vstack(expr),
        obs=obs,
        var=adata.var.copy() if expr is not None else None,
    )
    # predicted counts (the paper tested these): NB means at each cell's own library size, rounded;
    # a `decode` callable's output is rounded too when it is non-negative (expression at count scale)
    at_count_scale = (decoder == "scvi" and library_size is None) or (decoder == "callable" and out.X.min() >= 0)
    if at_count_scale:
        out.layers["counts"] = sparse.csr_matrix(np.rint(out.X))
    out.obsm[use_rep] = np.vstack([x, x_new]).astype(np.float32)
    codes = sparse.vstack([z, z_new], format="csr").astype(np.float32)
    codes.eliminate_zeros()
    out.obsm[f"X_{sae_key}"] = codes
    return out

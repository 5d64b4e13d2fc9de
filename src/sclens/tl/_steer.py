"""Steering: push one SAE feature up in chosen cells and predict the expression change (paper sec. 5.2)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .. import _provenance as provenance
from .._docs import doc_params
from .._utils import as_dense_float32, get_rep, sae_activations

logger = logging.getLogger("sclens")

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def _select_cells(adata: AnnData, groups: Any, *, name: str = "groups") -> np.ndarray:
    """Integer positions of the cells chosen by ``groups`` (``name``: the argument, for messages)."""
    if groups is None:
        idx = np.arange(adata.n_obs)
    elif isinstance(groups, Mapping):
        mask = np.ones(adata.n_obs, dtype=bool)
        for col, vals in groups.items():
            if col not in adata.obs.columns:
                msg = f"`adata.obs[{col!r}]` not found; available columns: {list(adata.obs.columns)}."
                raise KeyError(msg)
            # any collection of values (list, set, array, pandas Index / Categorical), or one value
            vals = [vals] if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable) else list(vals)
            mask &= adata.obs[col].astype(str).isin([str(v) for v in vals]).to_numpy()
        idx = np.flatnonzero(mask)
    else:
        arr = np.asarray(groups)
        if arr.dtype == bool:
            if arr.shape != (adata.n_obs,):
                msg = f"A boolean `groups` mask must have length n_obs={adata.n_obs}, got shape {arr.shape}."
                raise ValueError(msg)
            idx = np.flatnonzero(arr)
        else:
            pos = adata.obs_names.get_indexer(arr.astype(str))
            if (pos < 0).any():
                missing = list(arr[pos < 0][:5])
                msg = f"{int((pos < 0).sum())} cell name(s) in `groups` not in adata.obs_names, e.g. {missing}."
                raise KeyError(msg)
            idx = pos
    if idx.size == 0:
        msg = f"`{name}={groups!r}` selects no cell; check the obs column and its values."
        raise ValueError(msg)
    return idx


def _target_value(adata: AnnData, column: np.ndarray, value: Any, factor: float) -> float:
    """The activation the chosen cells are set to."""
    if isinstance(value, str) and value == "max":
        target = float(column.max())
    elif isinstance(value, str) and _PERCENTILE.match(value):
        q = float(_PERCENTILE.match(value).group(1))
        if q > 100:
            msg = f"Percentile {value!r} must be between p0 and p100."
            raise ValueError(msg)
        target = float(np.percentile(column[column > 0], q))
    elif isinstance(value, Mapping):
        target_cells = _select_cells(adata, value, name="value")
        target = float(column[target_cells].mean())
    elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        target = float(value)
    else:
        msg = (
            f"value must be 'max', a percentile such as 'p99', a number, or a mapping selecting a group "
            f"whose mean is used (e.g. {{'cell_type': 'Normoblast'}}), got {value!r}."
        )
        raise ValueError(msg)
    target *= float(factor)
    if not np.isfinite(target) or target < 0:
        msg = f"The target activation must be a finite number >= 0, got {target} (value={value!r}, factor={factor})."
        raise ValueError(msg)
    return target


@doc_params()
def steer(
    adata: AnnData,
    *,
    feature: int,
    groups: Mapping[str, Any] | Sequence[str] | np.ndarray | None = None,
    value: float | str | Mapping[str, Any] = "max",
    factor: float = 1.0,
    model: Any = None,
    decode: Callable[[np.ndarray, AnnData], np.ndarray] | None = None,
    key: str = "sae",
    library_size: float | None = None,
    batch_size: int = 512,
) -> AnnData:
    r"""Set one SAE feature in chosen cells and predict their embedding and expression.

    For each chosen cell with embedding :math:`x` and SAE code :math:`z`, the feature's activation is
    set to the target value, giving :math:`z'`, and the perturbed embedding is

    .. math:: x' = x + \mathrm{{dec}}(z') - \mathrm{{dec}}(z) = x + (z'_f - z_f)\, W_{{dec}}[f],

    so each cell keeps its SAE reconstruction error and only the feature's decoder direction moves
    (decoder weights ``adata.uns[key]['weights']``). With an scvi-tools ``model`` (or a ``decode``
    callable) the expression of both states is predicted at the same library size, batch and
    covariates of each cell.

    Parameters
    ----------
    {adata}
    feature
        Index of the SAE feature to steer.
    groups
        Cells to steer: ``None`` (all), a mapping ``{{obs column: value or list of values}}``, a
        boolean mask or a list of cell names.
    value
        Target activation: ``"max"`` (largest activation of the feature in the data, the paper's
        "maximising"), a number, a percentile of the feature's non-zero activations such as
        ``"p99"``, or a mapping selecting a group whose mean activation is used (the paper steered
        toward the normoblast mean: ``value={{"cell_type": "Normoblast"}}, factor=1.5``).
    factor
        Multiplier applied to the target activation.
    model
        Trained scvi-tools model (SCVI, SCANVI, LinearSCVI) whose latent space is the SAE's input
        embedding; its decoder predicts expression (``module.generative`` in eval mode).
    decode
        Alternative to ``model``: a callable ``decode(embedding, cells)`` taking the embeddings
        (cells x dims) and the AnnData view of the steered cells, returning expression
        (cells x ``adata.n_vars``).
    {key}
    library_size
        With ``model``: ``None`` predicts the negative-binomial mean at each cell's own library
        size, a number gives normalised expression scaled to that library size.
    batch_size
        Cells per minibatch when decoding through ``model``.

    Returns
    -------
    A new AnnData with two rows per steered cell (``obs['condition']`` ``"normal"`` /
    ``"perturbed"``, ``obs['cell']`` the original cell name, the original obs columns), ready for
    a contrast ``groupby="condition"``:

    * ``X``: predicted expression (genes as in ``adata.var``) when ``model`` or ``decode`` is
      given; otherwise ``X`` is empty (no variables);
    * ``layers['counts']``: with ``model`` and ``library_size=None``, the predicted means rounded to
      integers (predicted counts, as the paper tested), for
      ``sl.tl.contrast(steered, groupby="condition", group="perturbed", reference="normal", layer="counts")``;
    * ``obsm[use_rep]``: embeddings :math:`x` and :math:`x'`; ``obsm[f"X_{{key}}"]``: codes
      :math:`z` and :math:`z'` (CSR);
    * ``uns['steer']``: ``feature``, ``target`` (activation set), ``value``, ``factor``, ``key``,
      ``use_rep``, ``n_cells``, ``decoder`` (``"scvi"``, ``"callable"`` or ``"none"``).
    """
    act = sae_activations(adata, key)
    n_features = act.shape[1]
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)):
        msg = f"feature must be an integer feature index, got {feature!r}."
        raise TypeError(msg)
    if not 0 <= feature < n_features:
        msg = f"feature {feature} is out of range: this SAE has {n_features} features (0..{n_features - 1})."
        raise ValueError(msg)
    column = np.asarray(act[:, feature].toarray()).ravel()
    if column.max() <= 0:
        msg = f"feature {feature} is dead (never active in these cells); steer a live feature instead."
        raise ValueError(msg)
    if model is not None and decode is not None:
        msg = "Pass either `model` or `decode`, not both."
        raise ValueError(msg)
    weights = adata.uns[key].get("weights", {})
    if "W_dec" not in weights:
        msg = f"`adata.uns[{key!r}]['weights']['W_dec']` not found; refit with `sl.tl.fit_sae`."
        raise KeyError(msg)
    w_dec = np.asarray(weights["W_dec"], dtype=np.float64)
    use_rep = str(adata.uns[key].get("params", {}).get("use_rep", ""))
    x = as_dense_float32(get_rep(adata, use_rep)).astype(np.float64)
    if w_dec.shape != (n_features, x.shape[1]):
        msg = f"W_dec has shape {w_dec.shape}, expected ({n_features}, {x.shape[1]}) for `obsm[{use_rep!r}]`."
        raise ValueError(msg)
    idx = _select_cells(adata, groups)
    target = _target_value(adata, column, value, factor)
    if model is not None:
        from .._scvi import check_scvi_model

        check_scvi_model(model, adata)

    x = x[idx]
    z = act[idx]  # sparse: a dense cells x features copy can be far larger than the data
    z_f = column[idx]
    x_new = x + (target - z_f)[:, None] * w_dec[feature][None, :]
    keep = np.ones(n_features, dtype=np.float32)
    keep[feature] = 0.0
    z_new = z @ sparse.diags(keep) + sparse.csr_matrix(
        (np.full(idx.size, target, dtype=np.float32), (np.arange(idx.size), np.full(idx.size, feature))),
        shape=z.shape,
    )

    expr, decoder = None, "none"
    if model is not None:
        from .._scvi import decode_scvi, scvi_cell_inputs

        inputs = scvi_cell_inputs(model, adata, idx, batch_size=batch_size)
        expr = [decode_scvi(model, e, inputs, library_size=library_size, batch_size=batch_size) for e in (x, x_new)]
        decoder = "scvi"
    elif decode is not None:
        cells = adata[idx]
        expr = [np.asarray(decode(e, cells), dtype=np.float32) for e in (x, x_new)]
        for e in expr:
            if e.shape != (idx.size, adata.n_vars):
                msg = f"decode returned shape {e.shape}, expected ({idx.size}, {adata.n_vars}) (cells x genes)."
                raise ValueError(msg)
        decoder = "callable"

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
    if decoder == "scvi" and library_size is None:
        # the paper's DE ran on predicted counts: NB means at the cell's own library size, rounded
        out.layers["counts"] = sparse.csr_matrix(np.rint(out.X))
    out.obsm[use_rep] = np.vstack([x, x_new]).astype(np.float32)
    codes = sparse.vstack([z, z_new], format="csr").astype(np.float32)
    codes.eliminate_zeros()
    out.obsm[f"X_{key}"] = codes
    out.uns["steer"] = {
        "feature": int(feature),
        "target": float(target),
        "value": str(value),
        "factor": float(factor),
        "key": key,
        "use_rep": use_rep,
        "n_cells": int(idx.size),
        "decoder": decoder,
        **({"sae_run_id": rid} if (rid := provenance.run_id(adata, key)) is not None else {}),
    }
    logger.info("steer: feature %d set to %.4g in %d cells (decoder: %s)", feature, target, idx.size, decoder)
    return out

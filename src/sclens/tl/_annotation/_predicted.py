"""Predicted expression of any model: an scvi-tools model, a callable, or a layer of stored predictions.

:func:`predictor` turns the ``model=`` argument of :func:`~sclens.tl.annotate_features` into one
function ``f(cells) -> dense float64 (cells x genes)`` bound to an AnnData, which the DE engines read
in chunks of cells like observed counts (:class:`~sclens.tl._annotation._de.Expression`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData

Predict = Callable[[np.ndarray], np.ndarray]


def predictor(adata: AnnData, model: Any) -> tuple[Predict, str]:
    """Return ``(f, source)``: ``f(cells)`` gives the predicted expression of the cells ``cells`` (positions).

    ``model`` is a trained scvi-tools model set up on ``adata`` (``get_normalized_expression`` at each
    cell's own library size), a callable ``model(cells) -> cells x genes`` (any model: multiDGD,
    a decoder, ...), or the name of a layer of ``adata`` holding predicted expression. ``source`` is
    recorded in the annotation's params (``"model:SCVI"``, ``"model:<callable name>"``,
    ``"model:layers['<name>']"``). The predictions are checked (shape, finite, non-negative) per chunk.
    """
    if isinstance(model, str):
        if model not in adata.layers:
            msg = (
                f"model={model!r}: `adata.layers[{model!r}]` not found (available: {list(adata.layers)}); "
                "pass the layer that holds the model's predicted expression, or the model itself."
            )
            raise KeyError(msg)
        layer = adata.layers[model]
        return _checked(lambda idx: _rows(layer, idx), adata.n_vars, f"`adata.layers[{model!r}]`"), (
            f"model:layers[{model!r}]"
        )
    if hasattr(model, "get_normalized_expression"):
        return _checked(_scvi(adata, model), adata.n_vars, type(model).__name__), f"model:{type(model).__name__}"
    if callable(model):
        name = getattr(model, "__name__", type(model).__name__)
        return _checked(model, adata.n_vars, f"model {name!r}"), f"model:{name}"
    msg = (
        "model must be a trained scvi-tools model, a callable `model(cells) -> predicted expression "
        f"(cells x genes)` or the name of a layer of predicted expression, got {type(model).__name__}."
    )
    raise TypeError(msg)


def _scvi(adata: AnnData, model: Any) -> Predict:
    """scvi-tools' ``get_normalized_expression(library_size="latent")`` of the cells, in the order given.

    scvi-tools is given sorted, unique indices: with unsorted ones, ``get_normalized_expression``
    (scvi-tools 1.4) returns values that belong to no requested cell.
    """

    def predict(idx: np.ndarray) -> np.ndarray:
        import torch

        uniq, inverse = np.unique(idx, return_inverse=True)
        with torch.no_grad():
            pred = model.get_normalized_expression(adata, indices=uniq, library_size="latent", return_numpy=True)
        return np.asarray(pred, dtype=np.float64)[inverse]

    return predict


def _rows(x: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of an in-memory, backed or dask matrix, dense (read sorted and unique)."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    y = x[uniq]
    y = y.compute() if hasattr(y, "compute") else y
    y = y.toarray() if hasattr(y, "toarray") else np.asarray(y)
    return np.asarray(y, dtype=np.float64)[inverse]


def _checked(func: Callable, n_genes: int, what: str) -> Predict:
    """``func`` with its output turned into a float64 array and checked (shape, finite, non-negative)."""

    def predict(idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = func(idx)
        out = out.toarray() if sparse.issparse(out) else out
        out = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
        if out.shape != (idx.size, n_genes):
            msg = (
                f"The predicted expression of {what} for {idx.size} cell(s) has shape {out.shape}; expected "
                f"({idx.size}, {n_genes}): one row per requested cell, one column per gene of adata.var_names."
            )
            raise ValueError(msg)
        if not np.isfinite(out).all() or (out < 0).any():
            msg = (
                f"The predicted expression of {what} has NaN, infinite or negative values; it must be "
                "non-negative expected expression (check the model was trained successfully)."
            )
            raise ValueError(msg)
        return out

    return predict

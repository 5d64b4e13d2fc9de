"""Expression sources for differential expression: observed counts or a model's predictions.

Both are read in cell chunks; a scan accumulates, in one pass, the per-cell library sizes, the
gene-wise moments of library-normalised expression, and the group sums of every cell set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from .._utils import progress

if TYPE_CHECKING:
    from anndata import AnnData

CHUNK = 4096


@dataclass
class Scan:
    """One pass over the expression.

    ``library`` (cells), ``size_factors`` (cells, geometric mean 1), ``z_mean`` / ``z_var``
    (genes; moments of ``y / s``), ``sums`` (list, one k x genes array per membership matrix:
    sums of raw expression), ``ssums`` (same for ``s * y``, only when ``weighted``), ``zsums`` /
    ``z2sums`` (same for ``y / s`` and ``(y / s)^2``, only when ``squares``).
    """

    library: np.ndarray
    size_factors: np.ndarray
    z_mean: np.ndarray
    z_var: np.ndarray
    sums: list[np.ndarray]
    zsums: list[np.ndarray] | None = None
    z2sums: list[np.ndarray] | None = None
    ssums: list[np.ndarray] | None = None


class Expression:
    """Expression of ``adata``'s cells from ``layer`` / ``X`` counts or an scvi-tools ``model``."""

    def __init__(self, adata: AnnData, *, layer: str | None = None, model: Any = None) -> None:
        self.adata, self.layer, self.model = adata, layer, model
        self.var_names = adata.var_names.astype(str)
        if model is not None:
            if layer is not None:
                msg = "Pass either `layer=` (observed counts) or `model=` (predicted expression), not both."
                raise ValueError(msg)
            if not hasattr(model, "get_normalized_expression"):
                msg = (
                    f"model must be a trained scvi-tools model (with `get_normalized_expression`), "
                    f"got {type(model).__name__}."
                )
                raise TypeError(msg)
            self.integer = False
            self.source = f"model:{type(model).__name__}"
            return
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        if layer is not None and layer not in adata.layers:
            msg = (
                f"`adata.layers[{layer!r}]` not found; available layers: {list(adata.layers) or 'none'}. "
                "Store raw counts there (e.g. `adata.layers['counts'] = adata.X.copy()` before normalising)."
            )
            raise KeyError(msg)
        x = adata.X if layer is None else adata.layers[layer]
        if x is None:
            msg = f"{where} is empty; pass `layer=` naming a layer of raw counts."
            raise ValueError(msg)
        vals = x.data if sparse.issparse(x) else np.asarray(x)
        if not np.isfinite(vals).all():
            msg = f"{where} contains NaN or infinite values; raw counts must be finite."
            raise ValueError(msg)
        if vals.size and vals.min() < 0:
            msg = f"{where} contains negative values; pass `layer=` naming a layer of raw (non-negative) counts."
            raise ValueError(msg)
        if not np.array_equal(vals, np.round(vals)):
            hint = " such as `layer='counts'`" if "counts" in adata.layers else ""
            msg = (
                f"{where} does not hold integer counts (it looks normalised or log-transformed); "
                f"pass `layer=` naming raw counts{hint}, or `model=` for a model's predicted expression "
                "(rounded to integers for `de_method='deseq2'`)."
            )
            raise ValueError(msg)
        self.x = sparse.csr_matrix(x) if not sparse.issparse(x) else x.tocsr()
        self.integer = True
        self.source = where

    def chunks(self, cells: np.ndarray | None = None, *, chunk_size: int = CHUNK):
        """Yield ``(cell indices, expression chunk)``; sparse for counts, dense float32 for a model."""
        cells = np.arange(self.adata.n_obs) if cells is None else np.asarray(cells)
        for start in range(0, cells.size, chunk_size):
            idx = cells[start : start + chunk_size]
            if self.model is None:
                yield idx, self.x[idx].astype(np.float64)
            else:
                yield idx, self._predict(idx)

    def _predict(self, idx: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            pred = self.model.get_normalized_expression(
                self.adata, indices=idx, library_size="latent", return_numpy=True
            )
        pred = np.asarray(pred, dtype=np.float64)
        if not np.isfinite(pred).all():  # pragma: no cover - model output
            msg = "The model's predicted expression contains NaN; check the model was trained successfully."
            raise ValueError(msg)
        return pred

    def dense(self, idx: np.ndarray, *, integer: bool = False) -> np.ndarray:
        """Expression of cells ``idx`` as a dense array (rounded to int64 when ``integer``)."""
        blocks = [c.toarray() if sparse.issparse(c) else c for _, c in self.chunks(idx)]
        out = np.vstack(blocks) if blocks else np.zeros((0, len(self.var_names)))
        return np.rint(out).astype(np.int64) if integer else out

    def scan(self, memberships: list[sparse.spmatrix], *, squares: bool = False, weighted: bool = False) -> Scan:
        """Library sizes, normalised moments and group sums for each membership matrix (cells x k).

        ``weighted`` adds the group sums of ``s * y`` (size-factor-weighted expression), from the
        same sparse product as the plain sums.
        """
        n_genes = len(self.var_names)
        lib = np.zeros(self.adata.n_obs)
        zl1 = np.zeros(n_genes)  # sum of y / library
        zl2 = np.zeros(n_genes)  # sum of (y / library)^2
        mats = [sparse.csc_matrix(m.T, dtype=np.float64) for m in memberships]  # k x cells
        sums = [np.zeros((m.shape[0], n_genes)) for m in mats]
        zs = [np.zeros((m.shape[0], n_genes)) for m in mats] if squares else None
        z2s = [np.zeros((m.shape[0], n_genes)) for m in mats] if squares else None
        lys = [np.zeros((m.shape[0], n_genes)) for m in mats] if weighted else None  # sums of library * y
        n_chunks = int(np.ceil(self.adata.n_obs / CHUNK))
        for idx, y in progress(self.chunks(), total=n_chunks, desc="expression"):
            ly = np.asarray(y.sum(axis=1)).ravel()
            lib[idx] = ly
            inv = 1.0 / np.maximum(ly, 1e-12)
            yl = sparse.diags(inv) @ y if sparse.issparse(y) else y * inv[:, None]
            yl2 = yl.multiply(yl) if sparse.issparse(yl) else yl * yl
            zl1 += np.asarray(yl.sum(axis=0)).ravel()
            zl2 += np.asarray(yl2.sum(axis=0)).ravel()
            for j, m in enumerate(mats):
                block = m[:, idx[0] : idx[-1] + 1]  # chunks of all cells are contiguous
                if block.nnz == 0:
                    continue
                sums[j] += _dense(block @ y)
                if weighted:  # library-weighted membership: no copy of the expression chunk
                    lys[j] += _dense((block @ sparse.diags(ly)) @ y)
                if squares:
                    zs[j] += _dense(block @ yl)
                    z2s[j] += _dense(block @ yl2)
        if (lib <= 0).any():
            n_empty = int((lib <= 0).sum())
            msg = (
                f"{n_empty} cell(s) have no counts at all; "
                "remove them (e.g. `sc.pp.filter_cells(adata, min_counts=1)`)."
            )
            raise ValueError(msg)
        gm = float(np.exp(np.mean(np.log(lib))))
        n = self.adata.n_obs
        z_mean = zl1 * gm / n
        z_var = np.maximum(zl2 * gm**2 / n - z_mean**2, 0.0) * n / max(n - 1, 1)
        if squares:
            zs = [a * gm for a in zs]
            z2s = [a * gm**2 for a in z2s]
        ssums = [a / gm for a in lys] if weighted else None
        return Scan(lib, lib / gm, z_mean, z_var, sums, zs, z2s, ssums)


def _dense(x: Any) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)

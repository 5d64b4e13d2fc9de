"""Expression sources for differential expression: observed counts or a model's predictions.

Both are read in cell chunks; a scan accumulates, in one pass, the per-cell library sizes, the
gene-wise moments of library-normalised expression, and the group sums of every cell set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from ..._utils import get_layer, progress
from ._chunks import CHUNK, Rows, add_prods, block_stats, dask_block_stats, is_dask, local_stats, split_sums
from ._predicted import predictor

if TYPE_CHECKING:
    from anndata import AnnData


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
    """Expression of ``adata``'s cells from ``layer`` / ``X`` counts or a ``model``'s predictions.

    Counts may be in memory, backed (``read_h5ad(..., backed="r")``) or a dask array; they are
    read in chunks of cells (:mod:`sclens.tl._annotation._chunks`) and never densified as a whole.
    """

    def __init__(self, adata: AnnData, *, layer: str | None = None, model: Any = None) -> None:
        self.adata, self.layer, self.model = adata, layer, model
        self.var_names = adata.var_names.astype(str)
        self.n_obs = adata.n_obs
        if model is not None:
            if layer is not None:
                msg = "Pass either `layer=` (observed counts) or `model=` (predicted expression), not both."
                raise ValueError(msg)
            self.predict, self.source = predictor(adata, model)
            self.integer = False
            return
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        x = get_layer(adata, layer, what="raw counts")
        if x is None:
            msg = f"{where} is empty; pass `layer=` naming a layer of raw counts."
            raise ValueError(msg)
        hint = " such as `layer='counts'`" if "counts" in adata.layers else ""
        self.rows = Rows(x, where, hint)
        self.integer = True
        self.source = where

    def chunks(self, cells: np.ndarray | None = None, *, chunk_size: int = CHUNK):
        """Yield ``(cell indices, expression chunk)``; sparse for counts, dense float64 for a model."""
        if cells is None and self.model is None:
            for start, stop in self.rows.spans():
                yield np.arange(start, stop), self.rows.read(start, stop)
            return
        cells = np.arange(self.n_obs) if cells is None else np.asarray(cells)
        for start in range(0, cells.size, chunk_size):
            idx = cells[start : start + chunk_size]
            yield idx, (self.rows.take(idx) if self.model is None else self.predict(idx))

    def dense(self, idx: np.ndarray, *, integer: bool = False) -> np.ndarray:
        """Expression of cells ``idx`` as a dense array (rounded to int64 when ``integer``)."""
        blocks = [c.toarray() if sparse.issparse(c) else c for _, c in self.chunks(idx)]
        out = np.vstack(blocks) if blocks else np.zeros((0, len(self.var_names)))
        return np.rint(out).astype(np.int64) if integer else out

    def _block_stats(self, mats: list[sparse.csc_matrix], acc: list[np.ndarray], **kw: Any):
        """``(start, stop, block_stats)`` of every chunk of cells, its group sums added into ``acc``.

        Dask chunks are dask tasks returning their products; sparse chunks read here are added
        straight into ``acc`` (:func:`~sclens.tl._annotation._chunks.local_stats`).
        """
        if self.model is None and is_dask(self.rows.x):
            for start, stop, part in dask_block_stats(self.rows, mats, **kw):
                add_prods(acc, part["prods"])
                yield start, stop, part
            return
        for idx, y in self.chunks():
            start, stop = int(idx[0]), int(idx[-1]) + 1  # chunks of all cells are contiguous
            sub = [m[:, start:stop] for m in mats]
            if sparse.issparse(y):
                yield start, stop, local_stats(y, sub, acc, **kw)
                continue
            part = block_stats(y, sub, **kw)
            add_prods(acc, part["prods"])
            yield start, stop, part

    def scan(self, memberships: list[sparse.spmatrix], *, squares: bool = False, weighted: bool = False) -> Scan:
        """Library sizes, normalised moments and group sums for each membership matrix (cells x k).

        One pass over the cells. ``weighted`` adds the group sums of ``s * y`` (size-factor-weighted
        expression), from the same sparse product as the plain sums.
        """
        n_genes, n = len(self.var_names), self.n_obs
        mats = [sparse.csc_matrix(m.T, dtype=np.float64) for m in memberships]  # k x cells
        lib, zl1, zl2 = np.zeros(n), np.zeros(n_genes), np.zeros(n_genes)
        widths = [m.shape[0] * (1 + weighted) for m in mats]
        acc = [np.zeros((1 + 2 * squares, w, n_genes)) for w in widths]
        n_chunks = int(np.ceil(n / CHUNK))
        parts = self._block_stats(mats, acc, squares=squares, weighted=weighted)
        for start, stop, part in progress(parts, total=n_chunks, desc="expression"):
            lib[start:stop] = part["lib"]
            zl1 += part["zl1"]
            zl2 += part["zl2"]
        sums = [split_sums(a, m.shape[0], squares=squares, weighted=weighted) for a, m in zip(acc, mats, strict=True)]
        if (lib <= 0).any():
            n_empty = int((lib <= 0).sum())
            msg = (
                f"{n_empty} cell(s) have no counts at all; "
                "remove them (e.g. `sc.pp.filter_cells(adata, min_counts=1)`)."
            )
            raise ValueError(msg)
        gm = float(np.exp(np.mean(np.log(lib))))
        z_mean = zl1 * gm / n
        z_var = np.maximum(zl2 * gm**2 / n - z_mean**2, 0.0) * n / max(n - 1, 1)
        # in place: each of these is features x genes
        zs = [np.multiply(d["zs"], gm, out=d["zs"]) for d in sums] if squares else None
        z2s = [np.multiply(d["z2s"], gm**2, out=d["z2s"]) for d in sums] if squares else None
        ssums = [np.divide(d["lys"], gm, out=d["lys"]) for d in sums] if weighted else None
        return Scan(lib, lib / gm, z_mean, z_var, [d["sums"] for d in sums], zs, z2s, ssums)

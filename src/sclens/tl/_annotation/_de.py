"""Expression sources for differential expression: observed counts or a model's predictions.

Both are read in cell chunks; a scan accumulates, in one pass, every cell's size factor and the
group sums of raw and size-factor-normalised expression (and its square) of every cell set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from ..._utils import get_layer, progress
from ._chunks import CHUNK, Rows, add_prods, as_csr, block_stats, dask_block_stats, is_dask, local_stats
from ._dispersion import N_HIST
from ._predicted import predictor

if TYPE_CHECKING:
    from anndata import AnnData


#: cells read to compute the genes' mean log counts, the reference of the ``poscounts`` size factors
LOG_MEAN_CELLS = 10_000


@dataclass
class Scan:
    """One pass over the expression.

    ``size_factors`` (cells, geometric mean 1), and per membership matrix (cells x k) the k x genes
    group sums of raw expression ``y`` (``sums``), of ``z = y / s`` (``zsums``) and of ``z^2`` (``z2sums``);
    ``hist``: ``None``, or the histogram of the counts over each contrast's cells of all memberships
    (k x genes x ``N_HIST`` float32, :func:`~sclens.tl._annotation._dispersion.hist_codes`).
    """

    size_factors: np.ndarray
    sums: list[np.ndarray]
    zsums: list[np.ndarray]
    z2sums: list[np.ndarray]
    hist: np.ndarray | None = None


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

    def log_means(self, *, random_state: int = 0) -> np.ndarray:
        """Genes' mean ``log y`` (zeros count as 0) over at most ``LOG_MEAN_CELLS`` cells (a seeded sample).

        The reference of DESeq2's ``poscounts`` size factors; pyDESeq2 computes it on each contrast's
        cells, sclens once (on all cells when there are at most ``LOG_MEAN_CELLS``).
        """
        n = self.n_obs
        cells = None
        if n > LOG_MEAN_CELLS:
            cells = np.sort(np.random.default_rng(random_state).choice(n, LOG_MEAN_CELLS, replace=False))
        total, n_read = np.zeros(len(self.var_names)), 0
        for idx, y in self.chunks(cells):
            y = as_csr(y)
            total += np.bincount(y.indices, np.log(np.maximum(y.data, 1e-300)), minlength=total.size)
            n_read += idx.size
        return total / n_read

    def _block_stats(
        self,
        mats: list[sparse.csc_matrix],
        acc: list[np.ndarray],
        log_means: np.ndarray | None,
        hist: np.ndarray | None,
    ):
        """``(start, stop, block_stats)`` of every chunk of cells, its group sums added into ``acc`` (and ``hist``).

        Dask chunks are dask tasks returning their products; sparse chunks read here are added
        straight into ``acc`` (:func:`~sclens.tl._annotation._chunks.local_stats`).
        """
        want = hist is not None
        if self.model is None and is_dask(self.rows.x):
            for start, stop, part in dask_block_stats(self.rows, mats, log_means=log_means, hist=want):
                add_prods(acc, part["prods"])
                if want:
                    hist += part["hist"]
                yield start, stop, part
            return
        for idx, y in self.chunks():
            start, stop = int(idx[0]), int(idx[-1]) + 1  # chunks of all cells are contiguous
            sub = [m[:, start:stop] for m in mats]
            if sparse.issparse(y):
                yield start, stop, local_stats(y, sub, acc, log_means=log_means, hist=hist)
                continue
            part = block_stats(y, sub, log_means=log_means, hist=want)
            add_prods(acc, part["prods"])
            if want:
                hist += part["hist"]
            yield start, stop, part

    def scan(self, memberships: list[sparse.spmatrix], *, size_factors: str = "poscounts", hist: bool = False) -> Scan:
        """Size factors and the group sums of ``y``, ``y / s`` and ``(y / s)^2`` of each membership (cells x k).

        One pass over the cells (``size_factors="poscounts"`` first reads :meth:`log_means` on a sample).
        ``size_factors``: ``"poscounts"`` (DESeq2's median of ratios to the genes' mean log counts, no
        composition effect) or ``"library"`` (library sizes, the published tool's normalisation). Either
        is scaled to geometric mean 1 over all cells. ``hist``: also the histogram of the counts over
        each contrast's cells (:attr:`Scan.hist`; the memberships' columns are the same contrasts).
        """
        n_genes, n = len(self.var_names), self.n_obs
        log_means = self.log_means() if size_factors == "poscounts" else None
        mats = [sparse.csc_matrix(m.T, dtype=np.float64) for m in memberships]  # k x cells
        sf = np.zeros(n)
        acc = [np.zeros((3, m.shape[0], n_genes)) for m in mats]
        counts = np.zeros((mats[0].shape[0], n_genes, N_HIST), dtype=np.float32) if hist else None
        n_chunks = int(np.ceil(n / CHUNK))
        parts = self._block_stats(mats, acc, log_means, counts)
        for start, stop, part in progress(parts, total=n_chunks, desc="expression"):
            sf[start:stop] = part["sf"]
        if (sf <= 0).any():
            n_empty = int((sf <= 0).sum())
            msg = (
                f"{n_empty} cell(s) have no counts at all; "
                "remove them (e.g. `sc.pp.filter_cells(adata, min_counts=1)`)."
            )
            raise ValueError(msg)
        gm = float(np.exp(np.mean(np.log(sf))))
        for a in acc:  # in place: each is 3 x features x genes; z = y / (sf / gm)
            a[1] *= gm
            a[2] *= gm**2
        return Scan(sf / gm, [a[0] for a in acc], [a[1] for a in acc], [a[2] for a in acc], counts)

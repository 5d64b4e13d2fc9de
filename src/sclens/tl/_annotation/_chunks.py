"""Cells x genes matrices read in chunks of cells, wherever they live, and the per-chunk reduction.

Sources: in memory (NumPy, SciPy sparse), backed (``read_h5ad(..., backed="r")``: an HDF5 CSR/CSC
dataset or a dense ``h5py`` / ``zarr`` array) and dask arrays (``anndata.experimental.read_lazy``,
``read_elem_lazy``, or any ``dask.array``). A chunk is at most ``CHUNK`` cells with all genes; no
step holds more than one chunk of cells (dense chunks are made sparse). For dask, each chunk's
reduction (:func:`block_stats`) is a dask task, so it runs wherever the dask scheduler runs
(threads, processes or a ``dask.distributed`` cluster); tasks are computed a few at a time so that
their partial sums stay bounded in memory.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import sparse

from ._dispersion import EXACT, N_HIST, hist_codes

CHUNK = 4096
#: dask chunks computed at a time without a distributed client (each returns contrasts x genes sums)
DASK_BATCH = 4


def is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.")


def in_memory(x: Any) -> bool:
    return isinstance(x, np.ndarray) or sparse.issparse(x)


def check_counts(vals: np.ndarray, where: str, *, hint: str = "") -> None:
    """Raise unless ``vals`` (stored values of a count matrix) are finite, non-negative integers."""
    if vals.size == 0:
        return
    if not np.isfinite(vals).all():
        msg = f"{where} contains NaN or infinite values; raw counts must be finite."
        raise ValueError(msg)
    if vals.min() < 0:
        msg = f"{where} contains negative values; pass `layer=` naming a layer of raw (non-negative) counts."
        raise ValueError(msg)
    if not np.array_equal(vals, np.round(vals)):
        msg = (
            f"{where} does not hold integer counts (it looks normalised or log-transformed); "
            f"pass `layer=` naming raw counts{hint}, or `model=` for a model's predicted expression "
            "(rounded to integers for `de_method='deseq2'`)."
        )
        raise ValueError(msg)


def as_csr(y: Any) -> sparse.csr_matrix:
    """Return a chunk (sparse, dense, ``np.matrix``) as CSR float64."""
    if sparse.issparse(y):
        return sparse.csr_matrix(y, dtype=np.float64)
    return sparse.csr_matrix(np.asarray(y, dtype=np.float64))


class Rows:
    """Chunked access to the cells (rows) of a counts matrix; chunks are CSR float64, checked once."""

    def __init__(self, x: Any, where: str, hint: str = "") -> None:
        self.where, self.hint = where, hint
        self.memory = in_memory(x)
        if self.memory:  # checked here, cheaply, once
            check_counts(x.data if sparse.issparse(x) else np.asarray(x), where, hint=hint)
            if not sparse.issparse(x):  # scipy has no float16 sparse matrices
                x = np.asarray(x)
                x = sparse.csr_matrix(x.astype(np.float32) if x.dtype == np.float16 else x)
            x = x.tocsr()
        elif is_dask(x) and len(x.chunks[1]) > 1:  # a task needs whole cells
            x = x.rechunk({1: -1})
        self.x = x
        self.shape = tuple(int(n) for n in x.shape)
        dense_disk = not self.memory and not is_dask(x) and not hasattr(x, "format")
        # a dense chunk on disk is read whole: keep it near 16 M values
        self.chunk = min(CHUNK, max(64, 2**24 // max(self.shape[1], 1))) if dense_disk else CHUNK

    def _read(self, y: Any) -> sparse.csr_matrix:
        if not self.memory:  # a fresh float64 CSR: no second copy
            y = as_csr(y.compute() if is_dask(y) else y)
            check_counts(y.data, self.where, hint=self.hint)
            return y
        return y.astype(np.float64)

    def take(self, idx: np.ndarray) -> sparse.csr_matrix:
        """Cells ``idx`` in the given order (read sorted and unique from disk or dask)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.memory:
            return self._read(self.x[idx])
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._read(self.x[uniq])[inverse]

    def spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every chunk (dask: its own row chunks)."""
        if is_dask(self.x):
            stops = np.cumsum(self.x.chunks[0])
            return list(zip(np.r_[0, stops[:-1]].tolist(), stops.tolist(), strict=True))
        n = self.shape[0]
        return [(s, min(s + self.chunk, n)) for s in range(0, n, self.chunk)]

    def read(self, start: int, stop: int) -> sparse.csr_matrix:
        return self._read(self.x[start:stop])


def size_factors(y: sparse.csr_matrix, log_means: np.ndarray | None) -> np.ndarray:
    """Raw size factor of every cell (row) of a canonical CSR chunk, before scaling to geometric mean 1.

    ``log_means`` ``None``: the library size. Otherwise DESeq2's ``poscounts``: ``exp(median_j(log y_ij -
    log_means_j))`` over the cell's positive counts of genes with ``log_means_j > 0`` (all its positive
    counts when it has none there); ``log_means`` is the gene-wise mean of ``log y`` with zeros as 0.
    """
    lib = np.asarray(y.sum(axis=1)).ravel()
    if log_means is None:
        return lib
    return np.exp(_row_medians()(y.indptr, y.indices, np.log(np.maximum(y.data, 1e-300)), log_means))


@functools.cache
def _row_medians():
    """Return the kernel: per CSR row, the median of ``logy - log_means[gene]`` over usable genes, compiled by numba."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(indptr, indices, logy, log_means):  # pragma: no cover - compiled
        out = np.zeros(indptr.size - 1)
        for i in range(indptr.size - 1):
            a, b = indptr[i], indptr[i + 1]
            buf = np.empty(b - a)
            k = 0
            for ii in range(a, b):
                if log_means[indices[ii]] > 0:
                    buf[k] = logy[ii] - log_means[indices[ii]]
                    k += 1
            if k == 0:  # no gene of the reference set: all positive counts
                for ii in range(a, b):
                    buf[k] = logy[ii] - log_means[indices[ii]]
                    k += 1
            out[i] = np.median(buf[:k]) if k else -np.inf  # no counts: size factor 0
        return out

    return kernel


def _scaled(y: sparse.csr_matrix, log_means: np.ndarray | None) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Return the chunk in canonical form, its raw size factors ``sf`` and ``1 / max(sf, 1e-12)`` per cell."""
    if not y.has_canonical_format:
        y = y.copy()
        y.sum_duplicates()
    sf = size_factors(y, log_means)
    return y, sf, 1.0 / np.maximum(sf, 1e-12)


def _values(y: sparse.csr_matrix, log_means: np.ndarray | None) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Return the chunk in canonical form, its raw size factors and the values of ``y``, ``y / s``, ``(y / s)^2``."""
    y, sf, inv = _scaled(y, log_means)
    z = y.data * np.repeat(inv, np.diff(y.indptr))
    return y, sf, np.vstack([y.data, z, z * z])


def block_stats(
    y: Any,
    members: list[sparse.csc_matrix],
    *,
    log_means: np.ndarray | None,
    where: str | None = None,
    hist: bool = False,
):
    """Partial sums of one chunk of cells ``y`` (cells x genes; a dask task for dask input).

    ``members``: each membership matrix's columns for these cells (contrasts x cells). Returns the
    cells' raw size factors ``sf`` (:func:`size_factors`) and per membership ``prods[j]`` (``None`` when
    no cell of the chunk is a member): the sums of ``y``, ``y / sf`` and ``(y / sf)^2`` over each
    contrast's cells (3 arrays, contrasts x genes). ``where`` set: ``y`` is read here and checked to hold
    counts (out-of-core chunks). ``hist``: also ``hist``, the histogram of the counts over each
    contrast's cells of all memberships together (contrasts x genes x ``N_HIST``, see
    :func:`~sclens.tl._annotation._dispersion.hist_codes`).
    """
    y = as_csr(y)
    if where is not None:
        check_counts(y.data, where)
    y, sf, vals = _values(y, log_means)
    ys = [sparse.csr_matrix((v, y.indices, y.indptr), shape=y.shape) for v in vals]
    prods = [[b.tocsr() @ r for r in ys] if b.nnz else None for b in members]
    out = {"sf": sf, "prods": prods}
    if hist:
        codes = hist_codes(y.data)
        cols = [np.where(codes == h, 1.0, 0.0) for h in range(N_HIST)]
        for h in range(EXACT, N_HIST, 3):  # the sums of counts and squares after each tail bin's cell column
            cols[h] = np.where(codes == h - 1, np.rint(y.data), 0.0)
            cols[h + 1] = cols[h] ** 2
        parts = np.zeros((N_HIST, members[0].shape[0], y.shape[1]), dtype=np.float32)
        for b in (b.tocsr() for b in members if b.nnz):
            for h, v in enumerate(cols):
                add_into(parts[h], b @ sparse.csr_matrix((v, y.indices, y.indptr), shape=y.shape))
        out["hist"] = np.ascontiguousarray(np.moveaxis(parts, 0, -1))
    return out


def local_stats(
    y: sparse.csr_matrix,
    members: list[sparse.csc_matrix],
    acc: list[np.ndarray],
    *,
    log_means: np.ndarray | None,
    hist: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`block_stats` of a CSR chunk read in this process, its group sums added straight into ``acc``.

    ``acc``: per membership, the ``(3, contrasts, genes)`` sums :func:`block_stats` would return as
    ``prods``. No per-chunk product is formed: at atlas scale a chunk's product with the high cells is
    nearly dense (every feature has some high cells in every chunk), so forming it sparse and then
    adding it costs more than adding each stored count once per membership (:func:`_group_sums`).
    ``hist`` (contrasts x genes x ``N_HIST``): the count histogram, added into as well (:func:`_group_hist`).
    """
    y, sf, inv = _scaled(y, log_means)
    codes = hist_codes(y.data) if hist is not None else None
    for out, m in zip(acc, members, strict=True):
        if m.nnz:
            m = m.tocsr()  # features x chunk cells
            _group_sums()(out, m.indptr, m.indices, m.data, y.indptr, y.indices, y.data, inv)
            if hist is not None:
                _group_hist()(hist, m.indptr, m.indices, y.indptr, y.indices, codes, y.data)
    return {"sf": sf}


@functools.cache
def _group_sums():
    """Return the kernel adding ``m[f, c] * (y, y / s, (y / s)^2)[c, g]`` into ``out[:, f, g]``, compiled by numba.

    ``inv``: ``1 / s`` per cell. The three sums are taken in one pass over each member cell's
    stored counts (no ``3 x nnz`` array of values is formed).
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(out, m_ptr, m_idx, m_val, y_ptr, y_idx, y_val, inv):  # pragma: no cover - compiled
        for f in range(m_ptr.size - 1):  # feature-major: its three output rows stay in cache over its cells
            o0, o1, o2 = out[0, f], out[1, f], out[2, f]
            for jj in range(m_ptr[f], m_ptr[f + 1]):
                c, a = m_idx[jj], m_val[jj]
                s = inv[c]
                for ii in range(y_ptr[c], y_ptr[c + 1]):
                    g, v = y_idx[ii], y_val[ii]
                    z = v * s
                    o0[g] += a * v
                    o1[g] += a * z
                    o2[g] += a * (z * z)

    return kernel


@functools.cache
def _group_hist():
    """Return the kernel adding every member cell's counts into the histogram ``out[f, g, code]``, compiled by numba."""
    import numba

    tail = EXACT - 1

    @numba.njit(cache=True, nogil=True)
    def kernel(out, m_ptr, m_idx, y_ptr, y_idx, codes, y):  # pragma: no cover - compiled
        for f in range(m_ptr.size - 1):
            o = out[f]
            for jj in range(m_ptr[f], m_ptr[f + 1]):
                c = m_idx[jj]
                for ii in range(y_ptr[c], y_ptr[c + 1]):
                    g, k = y_idx[ii], codes[ii]
                    if k < 0:  # rounds to 0
                        continue
                    o[g, k] += 1.0
                    if k >= tail:
                        v = np.rint(y[ii])
                        o[g, k + 1] += v
                        o[g, k + 2] += v * v

    return kernel


def add_prods(acc: list[np.ndarray], prods: list[Any]) -> None:
    """Add a chunk's :func:`block_stats` products into ``acc`` (see :func:`local_stats`)."""
    for arrays, ps in zip(acc, prods, strict=True):
        for a, p in zip(arrays, ps or [], strict=False):
            add_into(a, p)


def add_into(acc: np.ndarray, part: Any) -> None:
    """``acc += part`` for a dense or sparse ``part``, without a dense copy of a sparse one."""
    if not sparse.issparse(part):
        acc += np.asarray(part)
        return
    part = part.tocsr()
    flat = np.repeat(np.arange(part.shape[0]) * acc.shape[1], np.diff(part.indptr)) + part.indices
    acc.reshape(-1)[flat] += part.data  # a sparse product holds each (row, column) once


def dask_block_stats(rows: Rows, mats: list[sparse.csc_matrix], **kw: Any):
    """Yield ``(start, stop, block_stats)`` of every dask chunk, computed ``DASK_BATCH`` tasks at a time."""
    import dask

    blocks = rows.x.to_delayed().ravel()
    spans = rows.spans()
    task = dask.delayed(block_stats, pure=True)
    step = _batch_size()
    for b0 in range(0, len(blocks), step):
        batch = list(range(b0, min(b0 + step, len(blocks))))
        parts = dask.compute(
            *[task(blocks[b], [m[:, slice(*spans[b])] for m in mats], where=rows.where, **kw) for b in batch]
        )
        for b, part in zip(batch, parts, strict=True):
            yield (*spans[b], part)


@contextlib.contextmanager
def worker_deaths() -> Iterator[None]:
    """Turn ``distributed.KilledWorker`` into an error that says what was lost and what to do.

    dask.distributed reruns a task whose worker died on another worker (``distributed.scheduler.allowed-failures``
    times, 3 by default); only when every attempt died does ``KilledWorker`` reach the caller. Nothing is
    stored by then: results are written only after every chunk was reduced.
    """
    try:
        from distributed import KilledWorker
    except ImportError:  # without dask.distributed no worker can die
        yield
        return
    try:
        yield
    except KilledWorker as err:
        msg = (
            "A dask worker died on every attempt to reduce a chunk of the counts (dask.distributed gave up after "
            "`distributed.scheduler.allowed-failures` retries); nothing was stored. Workers are usually killed for "
            "exceeding their memory limit: each task holds one chunk of cells and features x genes partial sums, "
            f"so give the workers more memory or the counts smaller chunks of cells. dask: {err}"
        )
        raise RuntimeError(msg) from err


def _batch_size() -> int:
    """Tasks computed at a time: ``DASK_BATCH``, or every thread of an active ``dask.distributed`` client."""
    try:
        from distributed import get_client

        return max(DASK_BATCH, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):  # no distributed, or no client
        return DASK_BATCH

"""Stream minibatches from numpy, scipy sparse, dask, h5py / backed arrays chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from .._utils import as_dense_float32

_CHUNK_FLOATS = 8 * 2**20  # ~32 MB of float32 per chunk read


def n_rows(x: Any) -> int:
    return int(x.shape[0])


def read_rows(x: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of an array-like as C-contiguous, finite float32 (only that slice is read)."""
    rows = x[start:stop]
    if isinstance(rows, torch.Tensor):  # slice first: a GPU tensor is never copied to the host whole
        rows = rows.detach().cpu().numpy()
    return as_dense_float32(rows)


def default_chunk_size(x: Any, batch_size: int) -> int:
    d = max(int(x.shape[1]), 1)
    return max(batch_size, _CHUNK_FLOATS // d)


class ArrayBatches:
    """Re-iterable float32 minibatches of an array that is read one contiguous chunk at a time.

    Each pass visits the chunks in a random order and shuffles rows within a chunk, so at most
    one chunk (``chunk_size`` rows, about 32 MB by default) is in memory, whatever the data size.

    Parameters
    ----------
    x
        Array-like with ``shape`` and row slicing: numpy, scipy sparse, dask, h5py dataset,
        AnnData backed array, torch tensor.
    batch_size
        Rows per minibatch.
    shuffle
        Shuffle chunk order and rows within chunks (a new order on every pass).
    seed
        Seed of the shuffling.
    mask
        Optional boolean row mask (e.g. training cells); other rows are skipped.
    chunk_size
        Rows per read; defaults to about 32 MB.
    rank, world_size
        Shard batches across data-parallel processes (batch ``i`` goes to rank ``i % world_size``).
    """

    def __init__(
        self,
        x: Any,
        *,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        mask: np.ndarray | None = None,
        chunk_size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}."
            raise ValueError(msg)
        self.x = x
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.chunk_size = int(chunk_size or default_chunk_size(x, batch_size))
        self.rank, self.world_size = rank, world_size
        self._epoch = 0

    @property
    def n_obs(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else n_rows(self.x)

    def __len__(self) -> int:
        n = -(-self.n_obs // self.batch_size)
        return n // self.world_size if self.world_size > 1 else n

    def chunks(self, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Yield the (masked) rows chunk by chunk, in ``order`` of chunk numbers."""
        n = n_rows(self.x)
        starts = np.arange(0, n, self.chunk_size)
        for i in starts if order is None else starts[order]:
            stop = min(int(i) + self.chunk_size, n)
            rows = read_rows(self.x, int(i), stop)
            if self.mask is not None:
                rows = rows[self.mask[int(i) : stop]]
            if len(rows):
                yield rows

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([self.seed, self._epoch])
        self._epoch += 1
        n_chunks = -(-n_rows(self.x) // self.chunk_size)
        order = rng.permutation(n_chunks) if self.shuffle else None
        n_batches = len(self) * self.world_size if self.world_size > 1 else None
        i, carry = 0, None
        for rows in self.chunks(order):
            if self.shuffle:
                rows = rows[rng.permutation(len(rows))]
            if carry is not None:
                rows = np.concatenate([carry, rows])
            n_full = len(rows) // self.batch_size * self.batch_size
            for s in range(0, n_full, self.batch_size):
                if n_batches is not None and i >= n_batches:
                    return
                if i % self.world_size == self.rank:
                    yield torch.from_numpy(rows[s : s + self.batch_size])
                i += 1
            carry = rows[n_full:] if n_full < len(rows) else None
        if carry is not None and (n_batches is None or i < n_batches) and i % self.world_size == self.rank:
            yield torch.from_numpy(np.ascontiguousarray(carry))


class DataStats(NamedTuple):
    """Streaming statistics of the training data (float64)."""

    n: int
    mean: np.ndarray
    var: np.ndarray
    sample: np.ndarray  # random rows used for the geometric median


def data_stats(source: Any, *, n_sample: int = 4096, seed: int = 0) -> DataStats:
    """Mean, variance and a row sample of an :class:`ArrayBatches` source or an iterable of tensors.

    Arrays are read chunk by chunk; for a generic iterable only its first ``n_sample`` rows are used.
    """
    rng = np.random.default_rng(seed)
    n, s1, s2, sample = 0, 0.0, 0.0, []
    if isinstance(source, ArrayBatches):
        chunks = source.chunks()
        keep_p = min(1.0, n_sample / max(source.n_obs, 1))
    else:
        chunks, keep_p = _first_rows(source, n_sample), 1.0
    for rows in chunks:
        r = rows.astype(np.float64)
        n += len(r)
        s1 = s1 + r.sum(0)
        s2 = s2 + (r * r).sum(0)
        sample.append(rows[rng.random(len(rows)) < keep_p])
    if n == 0:
        msg = "The training data has no rows."
        raise ValueError(msg)
    mean = s1 / n
    var = np.maximum(s2 / n - mean**2, 0.0)
    return DataStats(n, mean, var, np.concatenate(sample)[:n_sample])


def _first_rows(batches: Any, n_max: int) -> Iterator[np.ndarray]:
    got = 0
    for b in batches:
        rows = as_dense_float32(b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b)
        yield rows
        got += len(rows)
        if got >= n_max:
            return


def geometric_median(x: np.ndarray, *, n_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Weiszfeld's algorithm for the point minimising the summed Euclidean distance to the rows of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    y = x.mean(0)
    for _ in range(n_iter):
        d = np.linalg.norm(x - y, axis=1)
        w = 1.0 / np.maximum(d, 1e-12)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if np.linalg.norm(y_new - y) <= tol * max(np.linalg.norm(y), 1.0):
            return y_new
        y = y_new
    return y

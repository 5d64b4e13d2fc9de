"""Stream minibatches from numpy, scipy sparse, dask, h5py / backed arrays chunk by chunk."""

from __future__ import annotations

import copy
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


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}."
        raise ValueError(msg)


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
        _check_batch_size(batch_size)
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


class TensorBatches:
    """Re-iterable minibatches of a torch tensor, shuffled by index on the tensor's own device.

    A CUDA tensor stays on the GPU: each pass draws a permutation there and gathers rows, with
    no host round trip. ``mask`` / ``rank`` / ``world_size`` as in :class:`ArrayBatches`.
    """

    def __init__(
        self,
        x: torch.Tensor,
        *,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        mask: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_batch_size(batch_size)
        x = x.detach()
        if mask is not None:
            x = x[torch.as_tensor(np.asarray(mask, dtype=bool)).to(x.device)]
        if not bool(torch.isfinite(x).all()):
            msg = "The embedding contains NaN or infinite values; remove or impute those cells first."
            raise ValueError(msg)
        self.x = x.float() if x.dtype != torch.float32 else x
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.rank, self.world_size = rank, world_size
        self._epoch = 0

    @property
    def n_obs(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        n = -(-self.n_obs // self.batch_size)
        return n // self.world_size if self.world_size > 1 else n

    def __iter__(self) -> Iterator[torch.Tensor]:
        gen = torch.Generator(device=self.x.device).manual_seed(self.seed * 100_003 + self._epoch)
        self._epoch += 1
        n = self.n_obs
        order = torch.randperm(n, device=self.x.device, generator=gen) if self.shuffle else None
        n_batches = len(self) * self.world_size
        for i, s in enumerate(range(0, n, self.batch_size)):
            if i >= n_batches:
                return
            if i % self.world_size == self.rank:
                yield self.x[order[s : s + self.batch_size]] if order is not None else self.x[s : s + self.batch_size]


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
    if isinstance(source, TensorBatches):
        return _tensor_stats(source.x, n_sample, rng)
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


def _tensor_stats(x: torch.Tensor, n_sample: int, rng: np.random.Generator) -> DataStats:
    """:class:`DataStats` of a tensor computed on its device (only the results come to the host)."""
    n = int(x.shape[0])
    if n == 0:
        msg = "The training data has no rows."
        raise ValueError(msg)
    xd = x.double()
    mean = xd.mean(0)
    var = (xd - mean).pow(2).mean(0)
    rows = np.sort(rng.choice(n, min(n, n_sample), replace=False))
    sample = x[torch.from_numpy(rows).to(x.device)].cpu().numpy()
    return DataStats(n, mean.cpu().numpy(), var.cpu().numpy(), sample)


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


def as_batches(data: Any, *, batch_size: int, shuffle: bool, seed: int, **kw: Any) -> Any:
    """Wrap an array-like in :class:`ArrayBatches` (a torch tensor in :class:`TensorBatches`).

    Iterables of tensors pass through unchanged; ``rank`` / ``world_size`` in ``kw`` also shard a
    given :class:`ArrayBatches` / :class:`TensorBatches` (a shallow copy).
    """
    from collections.abc import Iterable

    if isinstance(data, ArrayBatches | TensorBatches):
        if kw.get("world_size", 1) > 1:
            data = copy.copy(data)
            data.rank, data.world_size = kw["rank"], kw["world_size"]
        return data
    if isinstance(data, torch.Tensor):
        return TensorBatches(data, batch_size=batch_size, shuffle=shuffle, seed=seed, **kw)
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):
        return ArrayBatches(data, batch_size=batch_size, shuffle=shuffle, seed=seed, **kw)
    if isinstance(data, Iterator):
        msg = (
            f"Training data is a one-shot iterator ({type(data).__name__}), but it is read once for "
            "statistics and once per epoch; pass a list of tensors or an array instead."
        )
        raise TypeError(msg)
    if isinstance(data, Iterable):
        return data
    msg = (
        "Training data must be an array (numpy, sparse, dask, backed), a tensor or an iterable of tensors, "
        f"got {type(data)}."
    )
    raise TypeError(msg)

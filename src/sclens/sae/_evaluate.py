"""Stream data through a trained SAE and collect its metrics (and, optionally, its activations)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ._data import as_batches
from ._model import SparseAutoencoder


class EvalResult(NamedTuple):
    """Metrics of an SAE on data; ``sse`` / ``sq_dev`` per cell (``sq_dev`` from the mean of all of ``data``)."""

    fvu: float
    l0: float
    dead_fraction: float
    n_live: int
    frequency: np.ndarray
    mean_activation: np.ndarray
    max_activation: np.ndarray
    sse: np.ndarray
    sq_dev: np.ndarray
    activations: Any  # scipy.sparse.csr_matrix (float32) or None


class _FeatureStats:
    """Per-feature firing counts, sums and maxima, accumulated batch by batch on the host.

    Compact (TopK-like) activations are scattered by feature index and turned into CSR rows
    directly, without an ``(n, F)`` dense intermediate. With ``n_rows`` known they are written into two
    arrays allocated once (values, feature numbers): a small CSR block kept per batch among the batch's
    freed temporaries fragments the heap (see :func:`evaluate`).
    """

    def __init__(self, n_features: int, *, keep: bool, n_rows: int | None = None) -> None:
        self.n_features = n_features
        self.count = torch.zeros(n_features, dtype=torch.float64)
        self.total = torch.zeros(n_features, dtype=torch.float64)
        self.vmax = torch.zeros(n_features)
        self.blocks: list[Any] = [] if keep else None
        self.n_rows = n_rows
        self.flat: list[Any] | None = None  # [values, feature numbers, rows written, k] of compact activations

    def add(self, acts: torch.Tensor, idx: torch.Tensor | None) -> None:
        from scipy import sparse

        acts = acts.float().cpu()
        if idx is None:
            self.count += (acts > 0).sum(0)
            self.total += acts.sum(0, dtype=torch.float64)
            self.vmax = torch.maximum(self.vmax, acts.max(0).values)
            if self.blocks is not None:
                self.blocks.append(sparse.csr_matrix(acts.numpy()))
            return
        n, k = acts.shape
        flat_i, flat_a = idx.cpu().flatten(), acts.flatten()
        self.count.index_add_(0, flat_i, (flat_a > 0).double())
        self.total.index_add_(0, flat_i, flat_a.double())
        self.vmax.scatter_reduce_(0, flat_i, flat_a, reduce="amax")  # activations are >= 0, vmax starts at 0
        if self.blocks is not None and self.n_rows is not None:  # k is the model's: the same for every batch
            if self.flat is None:
                self.flat = [np.empty(self.n_rows * k, np.float32), np.empty(self.n_rows * k, np.int32), 0, k]
            values, cols, at, _ = self.flat
            values[at * k : (at + n) * k], cols[at * k : (at + n) * k] = flat_a.numpy(), flat_i.numpy()
            self.flat[2] = at + n
        elif self.blocks is not None:
            indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
            block = sparse.csr_matrix((flat_a.numpy(), flat_i.numpy(), indptr), shape=(n, self.n_features))
            block.eliminate_zeros()
            self.blocks.append(block)

    def activations(self) -> Any:
        from scipy import sparse

        if self.flat is not None:
            values, cols, n, k = self.flat
            shape = (n, self.n_features)
            acts = sparse.csr_matrix((values[: n * k], cols[: n * k], np.arange(0, n * k + 1, k)), shape=shape)
            acts.eliminate_zeros()
        else:
            acts = sparse.vstack(self.blocks, format="csr")  # float32 blocks without stored zeros
        acts.sort_indices()
        return acts


@torch.no_grad()
def evaluate(
    model: SparseAutoencoder,
    data: Any,
    *,
    batch_size: int = 2048,
    reference_mean: np.ndarray | None = None,
    return_activations: bool = False,
) -> EvalResult:
    """Stream ``data`` through ``model`` (eval mode) in order and collect metrics.

    FVU is the summed squared reconstruction error over the summed squared deviation from
    ``reference_mean`` (default: the mean of ``data``). ``frequency`` is the fraction of cells
    in which a feature fires, ``mean_activation`` its mean over all cells, ``max_activation`` its
    maximum; a feature is dead when it never fires. With ``return_activations`` the activations
    are returned as a CSR float32 matrix, built batch by batch.
    """
    model.eval()
    batches = as_batches(data, batch_size=batch_size, shuffle=False, seed=0)
    if reference_mean is None:
        s1, n = 0.0, 0
        for batch in batches:
            s1 = s1 + torch.as_tensor(batch).double().sum(0)
            n += len(batch)
        reference_mean = s1 / max(n, 1)
    mu = torch.as_tensor(reference_mean, dtype=torch.float64).to(model.device)
    n_rows = batches.n_obs if getattr(batches, "world_size", 1) == 1 and hasattr(batches, "n_obs") else None
    feats = _FeatureStats(model.n_features, keep=return_activations, n_rows=n_rows)
    # per cell, written in place when the rows are known (a small tensor kept per batch fragments the heap)
    sse, sq_dev = ([np.empty(n_rows)], [np.empty(n_rows)]) if n_rows is not None else ([], [])
    at = 0
    for batch in batches:
        x = model.check_input(torch.as_tensor(batch, dtype=torch.float32))
        acts, idx = model.encode_compact(x)
        recon = model._denormalize(model._decode_normalized(acts, idx))
        errors = [(recon - x).double().pow(2).sum(1).cpu(), (x.double() - mu).pow(2).sum(1).cpu()]
        for out, e in zip((sse, sq_dev), errors, strict=True):
            if n_rows is None:
                out.append(e.numpy())
            else:
                out[0][at : at + len(e)] = e.numpy()
        at += len(x)
        feats.add(acts, idx)
    if at == 0:
        msg = "No data to evaluate the SAE on."
        raise ValueError(msg)
    sse_all, sq_dev = np.concatenate(sse)[:at], np.concatenate(sq_dev)[:at]
    n = len(sse_all)
    freq = (feats.count / n).numpy()
    live = freq > 0
    return EvalResult(
        fvu=float(sse_all.sum() / max(sq_dev.sum(), np.finfo(np.float64).tiny)),
        l0=float(feats.count.sum() / n),
        dead_fraction=float(1.0 - live.mean()),
        n_live=int(live.sum()),
        frequency=freq,
        mean_activation=(feats.total / n).float().numpy(),
        max_activation=feats.vmax.numpy(),
        sse=sse_all,
        sq_dev=sq_dev,
        activations=feats.activations() if return_activations else None,
    )

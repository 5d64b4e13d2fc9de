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
    from scipy import sparse

    model.eval()
    batches = as_batches(data, batch_size=batch_size, shuffle=False, seed=0)
    if reference_mean is None:
        s1, n = 0.0, 0
        for batch in batches:
            s1 = s1 + torch.as_tensor(batch).double().sum(0)
            n += len(batch)
        reference_mean = s1 / max(n, 1)
    mu = torch.as_tensor(reference_mean, dtype=torch.float64).to(model.device)
    n_feat = model.n_features
    count = torch.zeros(n_feat, dtype=torch.float64)
    total = torch.zeros(n_feat, dtype=torch.float64)
    vmax = torch.zeros(n_feat)
    sse, sq_dev, blocks = [], [], []
    for batch in batches:
        x = model.check_input(torch.as_tensor(batch, dtype=torch.float32))
        acts, idx = model.encode_compact(x)
        recon = model._denormalize(model._decode_normalized(acts, idx))
        sse.append((recon - x).double().pow(2).sum(1).cpu())
        sq_dev.append((x.double() - mu).pow(2).sum(1).cpu())
        dense = acts if idx is None else acts.new_zeros(len(x), n_feat).scatter_(1, idx, acts)
        dense = dense.cpu()
        count += (dense > 0).sum(0)
        total += dense.sum(0, dtype=torch.float64)
        vmax = torch.maximum(vmax, dense.max(0).values)
        if return_activations:
            blocks.append(sparse.csr_matrix(dense.numpy()))
    if not sse:
        msg = "No data to evaluate the SAE on."
        raise ValueError(msg)
    sse_all = torch.cat(sse).numpy()
    sq_dev = torch.cat(sq_dev).numpy()
    n = len(sse_all)
    freq = (count / n).numpy()
    live = freq > 0
    acts = None
    if return_activations:
        acts = sparse.vstack(blocks, format="csr").astype(np.float32)
        acts.eliminate_zeros()
    return EvalResult(
        fvu=float(sse_all.sum() / max(sq_dev.sum(), 1e-30)),
        l0=float(count.sum() / n),
        dead_fraction=float(1.0 - live.mean()),
        n_live=int(live.sum()),
        frequency=freq,
        mean_activation=(total / n).float().numpy(),
        max_activation=vmax.numpy(),
        sse=sse_all,
        sq_dev=sq_dev,
        activations=acts,
    )

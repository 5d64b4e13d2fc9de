"""Train an SAE with Lightning Fabric on any iterable of minibatches, and evaluate it."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from .._utils import progress as _progress
from ._data import ArrayBatches, data_stats, geometric_median
from ._model import SparseAutoencoder

logger = logging.getLogger("sclens")

CURVES = ("loss", "mse", "sparsity_loss", "auxk_loss", "fvu", "l0", "dead_fraction")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)`` (``None`` leaves it unchanged).

    On a shared machine, fewer threads than cores avoid costly thread contention.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(int(n), 1))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def as_batches(data: Any, *, batch_size: int, shuffle: bool, seed: int, **kw: Any) -> Iterable[torch.Tensor]:
    """Wrap an array-like in :class:`ArrayBatches`; pass iterables of tensors through unchanged.

    ``rank`` / ``world_size`` in ``kw`` also shard a given :class:`ArrayBatches` (a shallow copy).
    """
    if isinstance(data, ArrayBatches):
        if kw.get("world_size", 1) > 1:
            data = copy.copy(data)
            data.rank, data.world_size = kw["rank"], kw["world_size"]
        return data
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
    msg = f"Training data must be an array (numpy, sparse, dask, backed) or an iterable of tensors, got {type(data)}."
    raise TypeError(msg)


@torch.no_grad()
def initialize_from_data(model: SparseAutoencoder, data: Any, *, seed: int = 0) -> None:
    """Set input centring/scaling and the decoder bias from data statistics (streamed).

    Also rescales the tied encoder so the first reconstruction has the right size
    (:meth:`SparseAutoencoder.rescale_encoder_`).
    """
    cfg = model.cfg
    stats = data_stats(data, seed=seed)
    if stats.mean.shape[0] != cfg.input_dim:
        msg = f"The SAE expects inputs of width {cfg.input_dim} but the data has {stats.mean.shape[0]} columns."
        raise ValueError(msg)
    mean = stats.mean if cfg.center else np.zeros_like(stats.mean)
    if cfg.scale == "norm":
        scale = np.full_like(stats.mean, np.sqrt(max(stats.var.sum() / cfg.input_dim, 1e-12)))
    elif cfg.scale == "std":
        scale = np.sqrt(np.maximum(stats.var, 1e-12))
    else:
        scale = np.ones_like(stats.mean)
    if cfg.b_dec_init == "mean":
        b_dec = stats.mean
    elif cfg.b_dec_init == "median":
        b_dec = geometric_median(stats.sample)
    else:
        b_dec = mean
    b_dec = (b_dec - mean) / scale
    model.set_normalization_(torch.from_numpy(mean), torch.from_numpy(scale), torch.from_numpy(b_dec))
    if len(stats.sample):
        model.rescale_encoder_(torch.from_numpy(np.asarray(stats.sample, dtype=np.float32)).to(model.device))


def train_sae(
    model: SparseAutoencoder,
    data: Any,
    *,
    n_epochs: int = 10,
    batch_size: int = 1024,
    lr: float = 1e-4,
    seed: int = 0,
    val_data: Any = None,
    initialize: bool = True,
    fold: bool = True,
    accelerator: str = "cpu",
    devices: int | str = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    show_progress: bool | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, np.ndarray]:
    """Train ``model`` in place with Adam through :class:`lightning.fabric.Fabric`.

    ``data`` is an array-like (streamed chunk by chunk with :class:`ArrayBatches`) or any
    re-iterable of float tensors ``(n, d)``. Decoder rows are kept unit norm, with the gradient
    component parallel to each row removed before each step. For TopK-like architectures,
    features that have not fired for ``cfg.dead_steps`` steps receive the AuxK loss.
    ``accelerator`` / ``devices`` / ``strategy`` / ``precision`` go to Fabric, so
    ``strategy="ddp", devices=4`` trains on four GPUs; the default runs in-process on CPU.

    Returns the training history: per-epoch arrays of :data:`CURVES` (``dead_fraction`` is
    the fraction of features that did not fire in that epoch), ``val_fvu`` when ``val_data``
    is given, and ``loss_step`` (loss of every step).
    """
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import SingleDeviceStrategy

    if n_epochs < 1 or lr <= 0:
        msg = f"n_epochs must be >= 1 and lr > 0, got n_epochs={n_epochs}, lr={lr}."
        raise ValueError(msg)
    torch.manual_seed(seed)
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision)
    if not isinstance(fabric.strategy, SingleDeviceStrategy):
        fabric.launch()
    kw = {"rank": fabric.global_rank, "world_size": fabric.world_size}
    batches = as_batches(data, batch_size=batch_size, shuffle=True, seed=seed, **kw)
    val = None if val_data is None else as_batches(val_data, batch_size=batch_size, shuffle=False, seed=seed)
    if initialize:
        initialize_from_data(model, batches, seed=seed)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fmodel, optimizer = fabric.setup(model, optimizer)
    n_feat = model.n_features
    since_fired = torch.zeros(n_feat, dtype=torch.long, device=fabric.device)
    history: dict[str, list[float]] = {c: [] for c in (*CURVES, "val_fvu", "loss_step")}
    bar_kw = {} if show_progress is None else {"disable": not show_progress}
    bar = _progress(range(n_epochs), desc="fit_sae", unit="epoch", **bar_kw)
    for epoch in bar:
        sums = dict.fromkeys(CURVES[:-1], 0.0)
        n_seen, sse, total_var = 0, 0.0, 0.0
        fired_epoch = torch.zeros(n_feat, dtype=torch.bool, device=fabric.device)
        for batch in batches:
            x = fabric.to_device(torch.as_tensor(batch, dtype=torch.float32))
            dead = since_fired >= model.cfg.dead_steps if model.arch.uses_auxk else None
            out = fmodel(x, dead_mask=dead)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(out.loss)
            model.remove_parallel_grads_()
            optimizer.step()
            model.normalize_decoder_()
            fired = out.fired()
            if fabric.world_size > 1:
                fired = fabric.all_reduce(fired.float(), reduce_op="sum") > 0
            since_fired += 1
            since_fired[fired] = 0
            fired_epoch |= fired
            n = x.shape[0]
            n_seen += n
            for c in sums:
                sums[c] += float(getattr(out, c).detach()) * n
            sse += float(out.mse) * n
            total_var += float(out.total_variance)
            history["loss_step"].append(float(out.loss.detach()))
        if n_seen == 0:
            msg = f"The training data yielded no minibatches in epoch {epoch + 1}; pass at least 2 cells."
            raise ValueError(msg)
        for c in sums:
            history[c].append(sums[c] / n_seen)
        # epoch FVU from summed errors and deviations: a tiny last batch (1 cell: no deviation) cannot blow it up
        history["fvu"][-1] = sse / max(total_var, 1e-30)
        history["dead_fraction"].append(1.0 - float(fired_epoch.float().mean()))
        if val is not None:
            history["val_fvu"].append(evaluate(model, val).fvu)
            model.train()
        if callback is not None:
            callback(epoch, {c: v[-1] for c, v in history.items() if v})
        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", fvu=f"{history['fvu'][-1]:.3f}")
    model.eval()
    if fold:
        model.fold_normalization_()
    return {c: np.asarray(v, dtype=np.float64) for c, v in history.items() if v}


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

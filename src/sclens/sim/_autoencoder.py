"""A plain deterministic autoencoder on counts, the model whose embedding the simulation study probes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from torch import nn

from .._docs import doc_params
from .._settings import logger, resolve_device, resolve_n_jobs
from .._utils import as_dense_float32, check_adata, get_layer, progress, resolve_seed, writable
from ..sae import torch_threads

LOSSES = ("log1p", "nb")


def _mlp(sizes: Sequence[int], *, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _AutoEncoder(nn.Module):
    def __init__(self, n_in: int, hidden: Sequence[int], n_latent: int, loss: str) -> None:
        super().__init__()
        self.encoder = _mlp([n_in, *hidden, n_latent], last_activation=False)
        self.decoder = _mlp([n_latent, *reversed(hidden), n_in], last_activation=False)
        self.loss = loss
        if loss == "nb":
            self.log_theta = nn.Parameter(torch.zeros(n_in))

    def forward(self, x: torch.Tensor, y: torch.Tensor, lib: torch.Tensor) -> torch.Tensor:
        """Mean loss of a minibatch; ``x`` log1p input, ``y`` counts, ``lib`` library sizes."""
        out = self.decoder(self.encoder(x))
        if self.loss == "log1p":
            return ((out - x) ** 2).sum(dim=1).mean()
        mu = torch.softmax(out, dim=1) * lib[:, None]
        theta = self.log_theta.exp()
        log_theta_mu = torch.log(theta + mu + 1e-8)
        ll = (
            theta * (torch.log(theta + 1e-8) - log_theta_mu)
            + y * (torch.log(mu + 1e-8) - log_theta_mu)
            + torch.lgamma(y + theta)
            - torch.lgamma(theta)
            - torch.lgamma(y + 1.0)
        )
        return -ll.sum(dim=1).mean()


def _counts(adata: AnnData, layer: str | None) -> np.ndarray:
    y = as_dense_float32(get_layer(adata, layer), name="count matrix")
    return np.clip(y, 0, None)


def _check_args(loss: str, hidden: Sequence[int], *, sizes: tuple[int, ...], validation_fraction: float) -> list[int]:
    """Return the hidden widths as ints; refuse an unknown loss, sizes below 1 or a bad validation fraction."""
    if loss not in LOSSES:
        msg = f"loss must be one of {LOSSES}, got {loss!r}."
        raise ValueError(msg)
    hidden = [int(h) for h in hidden]
    if any(v < 1 for v in sizes) or any(h < 1 for h in hidden):
        msg = "n_latent, n_epochs, batch_size and every hidden width must be >= 1."
        raise ValueError(msg)
    if not 0 < validation_fraction < 1:
        msg = f"validation_fraction must be in (0, 1), got {validation_fraction}."
        raise ValueError(msg)
    return hidden


def _train_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, yt: torch.Tensor, lib: torch.Tensor, perm: torch.Tensor, *,
    batch_size: int, dev: torch.device,
) -> float:  # fmt: skip
    """Run one pass over the cells ``perm`` in minibatches; return the summed loss (model left in eval mode)."""
    model.train()
    total = 0.0
    for start in range(0, perm.numel(), batch_size):
        idx = perm[start : start + batch_size]
        yb = yt[idx].to(dev)
        batch_loss = model(torch.log1p(yb), yb, lib[idx].to(dev))
        opt.zero_grad()
        batch_loss.backward()
        opt.step()
        total += batch_loss.item() * idx.numel()
    model.eval()
    return total


@doc_params()
def fit_autoencoder(
    adata: AnnData,
    *,
    n_latent: int = 10,
    hidden: Sequence[int] = (128,),
    n_epochs: int = 50,
    loss: Literal["log1p", "nb"] = "log1p",
    layer: str | None = "counts",
    lr: float = 1e-3,
    batch_size: int = 128,
    validation_fraction: float = 0.1,
    random_state: int | None = 0,
    device: str | None = None,
    n_jobs: int | None = None,
    key_added: str = "ae",
    copy: bool = False,
) -> AnnData | None:
    r"""Train a plain deterministic autoencoder on the counts and store its embedding.

    Encoder and decoder are multilayer perceptrons with ReLU between layers and a linear latent
    layer. The input is :math:`\log(1 + y)`; ``loss="log1p"`` minimises the squared error of its
    reconstruction, ``loss="nb"`` the negative-binomial negative log-likelihood of the counts with
    mean :math:`\ell_c \, \mathrm{{softmax}}(\text{{decoder}}(z))` (library size :math:`\ell_c`)
    and one learned inverse dispersion per gene. Adam, full-batch validation loss each epoch.

    Parameters
    ----------
    {adata}
    n_latent
        Embedding dimension.
    hidden
        Widths of the encoder's hidden layers (the decoder mirrors them).
    n_epochs
        Passes over the training cells.
    loss
        ``"log1p"`` (squared error on log1p counts) or ``"nb"``.
    {layer}
    lr
        Adam learning rate.
    batch_size
        Minibatch size.
    validation_fraction
        Fraction of cells held out to record the validation loss.
    {random_state}
    device
        Torch device; ``None`` uses ``sclens.settings.device``.
    {n_jobs}
        Here: torch CPU threads (one is fastest on small, busy machines).
    {key_added}
    {copy}

    Returns
    -------
    ``None`` (or a copy with ``copy=True``); writes

    * ``adata.obsm[f"X_{{key_added}}"]``: the embedding (cells x ``n_latent``, float32);
    * ``adata.uns[key_added]``: ``params``, ``metrics`` (``train_loss`` and ``val_loss`` per epoch,
      ``final_val_loss``) and ``validation`` (boolean mask of held-out cells).
    """
    check_adata(adata)
    hidden = _check_args(loss, hidden, sizes=(n_latent, n_epochs, batch_size), validation_fraction=validation_fraction)
    seed = resolve_seed(random_state)
    dev = torch.device(resolve_device(device))
    y = _counts(adata, layer)

    rng = np.random.default_rng(seed)
    n = y.shape[0]
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.choice(n, size=max(1, round(validation_fraction * n)), replace=False)] = True
    with torch_threads(resolve_n_jobs(n_jobs) if dev.type == "cpu" else None):
        torch.manual_seed(seed)
        model = _AutoEncoder(y.shape[1], hidden, int(n_latent), loss).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        yt = torch.from_numpy(y)  # log1p is taken per minibatch to keep one copy of the counts
        lib = yt.sum(dim=1)
        tr_idx = np.flatnonzero(~is_val)
        val = torch.from_numpy(np.flatnonzero(is_val))
        gen = torch.Generator().manual_seed(seed)
        train_curve, val_curve = [], []
        for epoch in progress(range(n_epochs), desc="autoencoder"):
            perm = torch.from_numpy(tr_idx)[torch.randperm(tr_idx.size, generator=gen)]
            total = _train_epoch(model, opt, yt, lib, perm, batch_size=batch_size, dev=dev)
            with torch.no_grad():
                yv = yt[val].to(dev)
                v = float(model(torch.log1p(yv), yv, lib[val].to(dev)))
            train_curve.append(total / max(tr_idx.size, 1))
            val_curve.append(v)
            logger.debug("autoencoder epoch %d: train %.4f, validation %.4f", epoch, train_curve[-1], v)
        with torch.no_grad():
            emb = torch.cat([model.encoder(torch.log1p(yt[i : i + 4096].to(dev))).cpu() for i in range(0, n, 4096)])

    adata = writable(adata, copy=copy)
    adata.obsm[f"X_{key_added}"] = emb.numpy().astype(np.float32)
    adata.uns[key_added] = {
        "params": {
            "n_latent": int(n_latent),
            "hidden": np.asarray(hidden, dtype=np.int64),
            "n_epochs": int(n_epochs),
            "loss": loss,
            "layer": "X" if layer is None else layer,
            "lr": float(lr),
            "batch_size": int(batch_size),
            "validation_fraction": float(validation_fraction),
            "random_state": seed,
            "n_jobs": resolve_n_jobs(n_jobs),
        },
        "metrics": {
            "train_loss": np.asarray(train_curve),
            "val_loss": np.asarray(val_curve),
            "final_val_loss": float(val_curve[-1]),
        },
        "validation": is_val,
    }
    return adata if copy else None

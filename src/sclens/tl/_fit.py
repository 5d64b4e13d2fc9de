"""``sl.tl.fit_sae`` and ``sl.tl.encode``: train / apply a sparse autoencoder on an obsm embedding."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _provenance as provenance
from .._columns import write_columns
from .._docs import doc_params
from .._readers import sae_run
from .._settings import resolve_device, resolve_n_jobs
from .._utils import all_or_nothing, check_adata, get_rep, resolve_seed, writable
from .._warnings import SclensWarning
from ..sae import EvalResult, SparseAutoencoder
from ._fit_checks import check_embedding, check_key, check_spread, warn_bad_fit

#: the built-in architectures (the registry ``sclens.sae.available_architectures`` is checked against it)
Architecture = Literal["topk", "batchtopk", "matryoshka_batchtopk", "jumprelu", "relu", "vanilla"]

logger = logging.getLogger("sclens")

_doc_returns = """\
Returns ``None`` (or the modified copy when ``copy=True``) and writes

* ``adata.obsm['X_' + {key}]``: CSR float32 activations, cells x ``n_features`` (all >= 0);
* ``adata.uns[{key}]['run_id']``: a unique id of this SAE run, recorded by every result derived from it
  (results of an earlier run under the same key are dropped, with a warning);
* ``adata.uns[{key}]['params']``: architecture (and its ``architecture_options``), sizes, training
  settings (``trainer_kwargs`` as given) and ``use_rep``;
* ``adata.uns[{key}]['metrics']``: ``fvu`` (``fit_sae``: on the held-out cells if any; ``encode``: on
  these cells), ``fvu_all`` (all cells), ``l0``, ``dead_fraction``, ``n_live``{extra};
* ``adata.uns[{key}]['weights']``: ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec`` (and ``threshold``
  for ``batchtopk``), enough for :func:`sclens.get.sae` to rebuild the model;
* ``adata.uns[{key}]['features']``: DataFrame indexed ``"0"`` .. ``"F-1"`` with ``frequency``
  (fraction of cells where the feature fires), ``mean_activation`` (over all cells),
  ``max_activation`` and ``kind`` (``"live"`` / ``"dead"``)."""


def _accelerator(device: str | None) -> tuple[str, Any]:
    kind, _, index = resolve_device(device).partition(":")
    return kind, ([int(index)] if index else 1)


def _features_frame(ev: EvalResult) -> pd.DataFrame:
    n = len(ev.frequency)
    return pd.DataFrame(
        {
            "frequency": ev.frequency.astype(np.float64),
            "mean_activation": ev.mean_activation.astype(np.float64),
            "max_activation": ev.max_activation.astype(np.float64),
            "kind": np.where(ev.frequency > 0, "live", "dead").astype(object),
        },
        index=pd.Index([str(i) for i in range(n)], dtype=object),
    )


def _default_width(n_cells: int, n_dims: int, expansion_factor: int, k: int) -> int:
    """``expansion_factor * n_dims`` features, capped at a third of the cells (at least ``2 k``).

    On 1,000 cells x 64 dims (1,024 features by expansion) the cap lifts planted-atom recovery from
    0.84 to 0.98 (``benchmarks/fit_sae.py --recovery``); from ~3,000 cells on it rarely applies.
    """
    width = expansion_factor * n_dims
    cap = max(n_cells // 3, 2 * k)
    if width > cap:
        logger.info("fit_sae: %d features for %d cells (a third of them; pass n_features= to override)", cap, n_cells)
    return min(width, cap)


_SUMMARY = ("n_steps", "stop_reason", "best_step", "best_val_fvu")


def recorded_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``trainer_kwargs`` as stored in ``params`` (h5ad-safe).

    Numbers, strings and lists of them are kept as given; ``None`` (the default) is left out; any
    other object (a Lightning strategy, a callback) is recorded by its name.
    """
    out: dict[str, Any] = {}
    for name, value in (kwargs or {}).items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float, str, np.generic)):
            out[name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = np.asarray(value)
        else:
            out[name] = getattr(value, "__qualname__", type(value).__name__)
    return out


def _training_metrics(history: dict[str, np.ndarray]) -> dict[str, Any]:
    """``train_sae``'s history under the names of ``uns[key]['metrics']`` (scalars as Python values)."""
    out: dict[str, Any] = {c: history[c].item() for c in _SUMMARY}
    for c, v in history.items():
        if c in _SUMMARY or c == "lr":
            continue
        out[c if c.startswith("val_") else ("step_loss" if c == "loss_step" else f"train_{c}")] = v
    return out


def _write(
    adata: AnnData, key: str, ev: EvalResult, params: dict, metrics: dict, sae: SparseAutoencoder, run_id: str
) -> None:
    from ..sae import to_arrays

    features = fresh = _features_frame(ev)
    kept: dict[str, Any] = {}
    run = {"run_id": run_id, "params": params, "metrics": metrics, "weights": to_arrays(sae)}
    with all_or_nothing(adata):  # the stale results dropped, activations and run: all stored, or none
        if run_id != provenance.run_id(adata, key):
            provenance.drop_stale(adata, key)
        else:  # the same run re-encoded: its derived results (and feature-table columns) still hold
            old = adata.uns[key]
            kept = {k: v for k, v in old.items() if k not in provenance.RUN_ENTRIES}
            if isinstance(old.get("features"), pd.DataFrame) and len(old["features"]) == len(features):
                features = old["features"]
        adata.obsm[f"X_{key}"] = ev.activations
        run.update(kept)
        if features is not fresh:  # the kept table of the same run
            run["features"] = features
        adata.uns[key] = run
        if features is fresh:
            write_columns(adata, key, fresh, writer="sl.tl.fit_sae", n_features=len(fresh))


@doc_params(
    returns=_doc_returns.format(
        key="key_added",
        extra=", the training summary ``n_steps``, ``stop_reason`` (``'converged'``, ``'max_steps'`` or "
        "``'n_epochs'``), ``best_step``, ``best_val_fvu``, and training curves ``train_loss``, ``train_mse``, "
        "``train_fvu``, ``train_l0``, ``train_dead_fraction``, ``train_sparsity_loss``, "
        "``train_auxk_loss`` (one value per epoch, or per evaluation when training to convergence), "
        "``train_step`` (optimizer steps at each value), ``val_fvu``, ``val_loss`` and ``step_loss``",
    )
)
def fit_sae(
    adata: AnnData,
    *,
    use_rep: str,
    n_features: int | None = None,
    expansion_factor: int = 16,
    architecture: Architecture | str = "topk",
    k: int = 32,
    l1_weight: float = 1e-3,
    aux_k: int | None = None,
    aux_weight: float = 1.0 / 32,
    lr: float | None = None,
    n_epochs: int | None = None,
    batch_size: int = 1024,
    validation_fraction: float = 0.1,
    sae_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    random_state: int | None = 0,
    device: str | None = None,
    n_jobs: int | None = None,
    key_added: str = "sae",
    copy: bool = False,
) -> AnnData | None:
    """Train a sparse autoencoder on a cell embedding and store its activations.

    The embedding is streamed in minibatches (numpy, sparse, dask or backed arrays are never
    densified whole). A random ``validation_fraction`` of cells is held out; ``fvu`` is
    measured on them. Training runs through Lightning Fabric (see :func:`sclens.sae.train_sae`).

    Parameters
    ----------
    {adata}
    {use_rep}
    n_features
        Number of SAE features; ``None`` uses ``expansion_factor * n_dims``, but at most a third of the
        cells (and no fewer than ``2 * k``): a wider SAE on few cells memorises single cells instead of
        learning shared features.
    expansion_factor
        Features per embedding dimension when ``n_features`` is ``None``.
    architecture
        ``"topk"``, ``"batchtopk"``, ``"matryoshka_batchtopk"``, ``"jumprelu"``, ``"relu"`` or
        ``"vanilla"`` (:func:`sclens.sae.available_architectures`), or the name of an architecture
        added with :func:`sclens.sae.register_architecture`.
    k
        Active features per cell for ``topk`` / ``batchtopk`` (must be below ``n_features``).
    l1_weight
        L1 sparsity weight of ``vanilla`` / ``relu``.
    aux_k
        Dead features used by the AuxK loss; ``None`` picks a default, ``0`` disables AuxK.
    aux_weight
        Weight of the AuxK loss.
    lr
        Adam learning rate; ``None`` scales it with the SAE width, ``2e-4 / sqrt(n_features / 2**14)``
        (:func:`sclens.sae.default_lr`: 1.6e-3 for 256 features, 2e-4 for 16,384), after a short warm-up.
    n_epochs
        Passes over the training cells. ``None`` trains until the held-out loss stops improving
        (:class:`sclens.sae.Stopping`: learning rate decayed once on a plateau, best weights
        restored), within 500 and 20,000 optimizer steps (``trainer_kwargs`` ``min_steps`` /
        ``max_steps`` / ``patience`` / ``eval_every`` change this).
    batch_size
        Cells per minibatch.
    validation_fraction
        Fraction of cells held out to measure FVU (0, or fewer than 2 held-out cells, measures it on all cells).
    sae_kwargs
        Further :class:`sclens.sae.SAEConfig` fields (``dead_steps``, ``b_dec_init``, ``center``, ``scale``,
        ``architecture_options``: the architecture's own settings, e.g.
        ``{{"architecture_options": sclens.sae.JumpReLUConfig(bandwidth=0.1)}}``, or ``{{"bandwidth": 0.1}}``
        in its place).
    trainer_kwargs
        Further arguments of :func:`sclens.sae.train_sae` (``devices``, ``strategy``, ``precision``,
        ``min_steps``, ``max_steps``, ``patience``, ``eval_every``). With ``strategy="ddp"`` and several
        devices, every process trains its share of the batches; only rank 0 evaluates and writes to
        ``adata`` (other ranks return ``None`` and leave their ``adata`` unchanged).
    {random_state}
    device
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``); ``None`` uses ``sclens.settings.device``.
    {n_jobs}
        Here: torch CPU threads.
    {key_added}
    {copy}

    Returns
    -------
    {returns}
    """
    from ..sae import ArrayBatches, SAEConfig, evaluate, global_rank, torch_threads, train_sae

    check_adata(adata)
    x = get_rep(adata, use_rep)
    check_embedding(x, use_rep)
    check_spread(x, use_rep)
    seed = resolve_seed(random_state)
    n, d = int(x.shape[0]), int(x.shape[1])
    if n_features is None:
        n_features = _default_width(n, d, int(expansion_factor), k)
    cfg = SAEConfig(
        input_dim=d, n_features=n_features, architecture=architecture, k=k, l1_weight=l1_weight,
        aux_k=aux_k, aux_weight=aux_weight, **(sae_kwargs or {}),
    )  # fmt: skip
    if not 0 <= validation_fraction < 1:
        msg = f"validation_fraction must be in [0, 1), got {validation_fraction}."
        raise ValueError(msg)
    check_key(key_added, "key_added")
    n_val = round(validation_fraction * n)
    n_val = n_val if n_val >= 2 and n - n_val >= 2 else 0  # FVU needs >= 2 cells to have a variance
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(n, dtype=bool)
    val_mask[rng.choice(n, n_val, replace=False)] = True
    accelerator, devices = _accelerator(device)
    train_kw = {"accelerator": accelerator, "devices": devices, **(trainer_kwargs or {})}

    with torch_threads(resolve_n_jobs(n_jobs) if accelerator == "cpu" else None):
        sae = SparseAutoencoder(cfg, seed=seed)
        train = ArrayBatches(x, batch_size=batch_size, shuffle=True, seed=seed, mask=~val_mask)
        val = ArrayBatches(x, batch_size=batch_size, shuffle=False, mask=val_mask) if n_val else None
        history = train_sae(
            sae, train, n_epochs=n_epochs, batch_size=batch_size, lr=lr, seed=seed, val_data=val, **train_kw
        )
        rank = global_rank()
        if rank != 0:  # DDP: every process holds the same weights; rank 0 alone evaluates and writes
            logger.info("fit_sae: process of rank %d done; rank 0 writes the results.", rank)
            return None
        ev = evaluate(sae.cpu(), x, batch_size=max(batch_size, 1024), return_activations=True)
        # held-out FVU: deviations from the held-out cells' own mean (as `val_fvu` during training)
        fvu = evaluate(sae, val, batch_size=max(batch_size, 1024)).fvu if n_val else ev.fvu
    params = {
        **cfg.to_dict(), "use_rep": use_rep, "lr": float(history["lr"]),
        "n_epochs": "auto" if n_epochs is None else int(n_epochs), "batch_size": int(batch_size),
        "validation_fraction": float(validation_fraction), "n_train": n - n_val, "n_val": n_val,
        "fvu_on": "validation" if n_val else "all", "random_state": seed, "device": str(accelerator),
        "trainer_kwargs": recorded_kwargs(trainer_kwargs), "source": "fit_sae",
    }  # fmt: skip
    metrics = {"fvu": fvu, "fvu_all": ev.fvu, "l0": ev.l0, "dead_fraction": ev.dead_fraction, "n_live": ev.n_live}
    metrics.update(_training_metrics(history))
    warn_bad_fit(fvu, ev.n_live, n_features)
    adata = writable(adata, copy=copy)
    _write(adata, key_added, ev, params, metrics, sae, provenance.new_run_id())
    logger.info("fit_sae: FVU %.4f, L0 %.1f, dead %.1f%%", fvu, ev.l0, 100 * ev.dead_fraction)
    return adata if copy else None


def _same_run(adata: AnnData, key: str, ev: EvalResult, model: SparseAutoencoder) -> bool:
    """Whether encoding reproduced the stored run: the same weights and exactly the same activations."""
    from scipy import sparse

    from ..sae import to_arrays

    stored, run = adata.obsm.get(f"X_{key}"), adata.uns.get(key)
    if stored is None or stored.shape != ev.activations.shape or not isinstance(run, dict):
        return False
    weights = run.get("weights")
    new = to_arrays(model)
    if not isinstance(weights, dict) or set(weights) != set(new):
        return False
    if not all(np.array_equal(np.asarray(weights[k]), v) for k, v in new.items()):
        return False
    return (sparse.csr_matrix(stored) != ev.activations).nnz == 0


def _stored_use_rep(adata: AnnData, key: str) -> dict[str, str]:
    """``{"use_rep": ...}`` of the SAE run stored under ``key``, or ``{}`` when there is none."""
    if key not in adata.uns:
        return {}
    run = sae_run(adata, key, need=())
    params = run.get("params", {}) if isinstance(run, dict) else {}
    return {"use_rep": params["use_rep"]} if "use_rep" in params else {}


def _resolve_source(adata: AnnData, key: str, sae: Any) -> tuple[SparseAutoencoder, dict, dict]:
    """Return the model to apply plus the params / training curves of where it came from."""
    from ..sae import from_arrays, load_sae

    if sae is None:
        sae = adata
    # a bare model does not know its embedding: fall back on a run already stored under `key`
    own = _stored_use_rep(adata, key)
    if isinstance(sae, SparseAutoencoder):
        return sae.eval(), own, {}
    if isinstance(sae, (str, os.PathLike)):
        return load_sae(sae), own, {}
    if hasattr(sae, "uns") and hasattr(sae, "obsm"):
        run = sae_run(sae, key)
        model = from_arrays(dict(run["params"]), dict(run["weights"]), source=f"`uns[{key!r}]['weights']`")
        params = dict(run.get("params", {}))
        curves = {c: v for c, v in run.get("metrics", {}).items() if np.ndim(v) == 1}
        return model, params, curves
    msg = (
        f"sae must be None (use `adata.uns[{key!r}]`), a SparseAutoencoder, an AnnData holding a fitted "
        f"SAE, or a directory saved with `sclens.sae.save_sae`; got {type(sae).__name__}."
    )
    raise TypeError(msg)


@doc_params(
    returns=_doc_returns.format(key="key_added", extra=" on these cells (training curves copied from the source)")
)
def encode(
    adata: AnnData,
    *,
    sae: SparseAutoencoder | AnnData | str | os.PathLike | None = None,
    sae_key: str | None = None,
    use_rep: str | None = None,
    batch_size: int = 2048,
    key_added: str = "sae",
    copy: bool = False,
) -> AnnData | None:
    """Apply a trained SAE to cells (query data, a second sample) and store its activations.

    Parameters
    ----------
    {adata}
    sae
        The SAE: ``None`` rebuilds it from ``adata.uns[sae_key]``; or a
        :class:`~sclens.sae.SparseAutoencoder`, a reference AnnData fitted with
        :func:`~sclens.tl.fit_sae` (read under ``sae_key``), or a directory written by
        :func:`sclens.sae.save_sae`.
    sae_key
        Key of the SAE run read (in ``adata`` or in the reference given as ``sae``); ``None``: ``key_added``.
    use_rep
        Key in ``adata.obsm`` to encode; ``None`` uses the ``use_rep`` the SAE was trained on.
    batch_size
        Cells encoded at a time.
    {key_added}
    {copy}

    Returns
    -------
    {returns}
    """
    from ..sae import check_input_dim, evaluate

    check_adata(adata)
    check_key(key_added, "key_added")
    sae_key = key_added if sae_key is None else sae_key
    model, params, curves = _resolve_source(adata, sae_key, sae)
    trained_on = params.get("use_rep")
    use_rep = use_rep if use_rep is not None else trained_on
    if use_rep is None:
        msg = "The SAE does not say which embedding it was trained on; pass `use_rep=`."
        raise ValueError(msg)
    use_rep = str(use_rep)
    x = get_rep(adata, use_rep)
    check_embedding(x, use_rep)
    check_input_dim(model, x.shape[1], what=f"`obsm[{use_rep!r}]`")
    if trained_on is not None and use_rep != str(trained_on):
        warnings.warn(
            f"The SAE was trained on `obsm[{str(trained_on)!r}]` but is applied to `obsm[{use_rep!r}]`; an "
            "embedding of the same width from another model gives meaningless activations. Encode the "
            "embedding the SAE was trained on (for query data: the same model's latent space).",
            SclensWarning,
            stacklevel=2,
        )
    ev = evaluate(model.cpu(), x, batch_size=batch_size, return_activations=True)
    params = {**params, **model.cfg.to_dict(), "use_rep": use_rep, "source": "encode"}
    metrics = {**curves, "fvu": ev.fvu, "fvu_all": ev.fvu, "l0": ev.l0, "dead_fraction": ev.dead_fraction,
               "n_live": ev.n_live}  # fmt: skip
    rid = provenance.run_id(adata, key_added) if _same_run(adata, key_added, ev, model) else None
    adata = writable(adata, copy=copy)
    _write(adata, key_added, ev, params, metrics, model, rid or provenance.new_run_id())
    return adata if copy else None

"""Decode latent vectors through an scvi-tools model (scvi-tools has no public call for it).

The wrapper runs ``model.module.generative`` in eval mode under ``torch.no_grad()`` with each
cell's own log library size, batch index, labels and covariates, read through the model's
registered data loader. Models supported: those whose module is an :class:`scvi.module.VAE`
(or subclass) and therefore share its ``generative(z, library, batch_index, cont_covs, cat_covs,
size_factor, y)`` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

SUPPORTED_MODELS = ("SCVI", "SCANVI", "LinearSCVI")


def _import_scvi():
    try:
        import scvi
    except ImportError as e:  # pragma: no cover
        msg = "Decoding through a generative model needs scvi-tools: `pip install scvi-tools`."
        raise ImportError(msg) from e
    return scvi


def check_scvi_model(model: Any, adata: AnnData) -> None:
    """Raise unless ``model`` is a supported scvi-tools model trained on ``adata``'s genes."""
    scvi = _import_scvi()
    module = getattr(model, "module", None)
    if not isinstance(module, scvi.module.VAE):
        msg = (
            f"Unsupported model class {type(model).__name__}: decoding needs an scvi-tools model whose "
            f"module is `scvi.module.VAE` (supported: {', '.join(SUPPORTED_MODELS)}); for other models "
            "pass a `decode` callable instead."
        )
        raise TypeError(msg)
    if getattr(module, "latent_distribution", "normal") != "normal":
        msg = (
            f"The model uses latent_distribution={module.latent_distribution!r}; decoding an embedding "
            "is supported for latent_distribution='normal' only."
        )
        raise ValueError(msg)
    model_genes = model.adata.var_names
    if len(model_genes) != adata.n_vars or not (model_genes == adata.var_names).all():
        n_shared = len(model_genes.intersection(adata.var_names))
        msg = (
            f"The model's genes differ from the AnnData's: model has {len(model_genes)} genes, adata "
            f"{adata.n_vars}, {n_shared} shared (same names in the same order are required). Subset "
            "the AnnData to `model.adata.var_names` or pass the AnnData the model was set up with."
        )
        raise ValueError(msg)


def scvi_cell_inputs(
    model: Any, adata: AnnData, indices: Sequence[int] | None = None, *, batch_size: int = 512
) -> dict[str, np.ndarray | None]:
    """Per-cell decoder inputs: latent mean ``qz_mean``, log ``library`` and covariates.

    ``library`` is the observed log library size when the model uses it, else the mean of the
    library posterior. Other keys: ``batch_index``, ``y``, ``cont_covs``, ``cat_covs``,
    ``size_factor`` (log), each an array or ``None``.
    """
    import torch

    check_scvi_model(model, adata)
    adata = model._validate_anndata(adata)
    module = model.module
    was_training = module.training
    module.eval()
    keys = ("qz_mean", "library", "batch_index", "y", "cont_covs", "cat_covs", "size_factor")
    parts: dict[str, list] = {k: [] for k in keys}
    loader = model._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
    try:
        with torch.no_grad():
            for tensors in loader:
                inf = module.inference(**module._get_inference_input(tensors))
                gen_in = module._get_generative_input(tensors, inf)
                lib = inf["library"] if module.use_observed_lib_size else inf["ql"].loc
                parts["qz_mean"].append(inf["qz"].loc)
                parts["library"].append(lib)
                for k in keys[2:]:
                    parts[k].append(gen_in.get(k))
    finally:
        module.train(was_training)
    return {k: (None if not v or v[0] is None else torch.cat(v).cpu().numpy()) for k, v in parts.items()}


def decode_scvi(
    model: Any,
    z: np.ndarray,
    inputs: dict[str, np.ndarray | None],
    *,
    library_size: float | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """Expression predicted by ``model`` for latent vectors ``z`` (cells x latent dims).

    ``inputs`` comes from :func:`scvi_cell_inputs` for the same cells (same order): the library,
    batch and covariates of each cell are kept. Returns the negative-binomial mean at the cell's
    library size (``library_size=None``), or the normalised expression times ``library_size``
    (as ``model.get_normalized_expression(library_size=...)``).
    """
    import torch

    module = model.module
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != module.n_latent:
        msg = f"z must have shape (cells, {module.n_latent}) for this model, got {z.shape}."
        raise ValueError(msg)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, z.shape[0], batch_size):
                sl_ = slice(start, start + batch_size)

                def _t(name, sl_=sl_):
                    arr = inputs.get(name)
                    return None if arr is None else torch.as_tensor(arr[sl_], device=device)

                gen = module.generative(
                    z=torch.as_tensor(z[sl_], device=device),
                    library=_t("library"),
                    batch_index=_t("batch_index"),
                    cont_covs=_t("cont_covs"),
                    cat_covs=_t("cat_covs"),
                    size_factor=_t("size_factor"),
                    y=_t("y"),
                )
                px = gen["px"]
                # `get_normalized` exists for every likelihood (NB/ZINB `.mu`, Poisson `.rate`, and
                # for "normal" the normalised mean is `normal_mu`, not the distribution's `scale`)
                if library_size is None:
                    expr = px.get_normalized("mu")
                else:
                    expr = px.get_normalized("scale") * float(library_size)
                out.append(expr.cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out, axis=0).astype(np.float32)

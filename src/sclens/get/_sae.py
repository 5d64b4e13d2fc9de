"""``sl.get.sae``: rebuild a fitted sparse autoencoder from ``adata.uns`` alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anndata import AnnData

from .._docs import doc_params
from .._utils import check_adata
from ..sae import SparseAutoencoder


def sae_run(adata: AnnData, key: str = "sae", *, need: tuple[str, ...] = ("params", "weights")) -> dict[str, Any]:
    """``adata.uns[key]`` after checking it holds an SAE run with the entries ``need``."""
    check_adata(adata)
    if key not in adata.uns:
        runs = [k for k, v in adata.uns.items() if isinstance(v, dict) and "weights" in v and "params" in v]
        msg = (
            f"`adata.uns[{key!r}]` not found; SAE runs present: {runs or 'none'}. "
            f"Run `sl.tl.fit_sae(adata, use_rep=..., key_added={key!r})` first."
        )
        raise KeyError(msg)
    run = adata.uns[key]
    source = run.get("params", {}).get("source") if isinstance(run, dict) else None
    if source == "baseline_features" and "weights" in need:
        method = run["params"].get("method", "linear")
        msg = (
            f"`adata.uns[{key!r}]` is a baseline ({method.upper()}) written by `sl.tl.baseline_features`, not an SAE: "
            f"there is no encoder to rebuild. Its components are in `adata.uns[{key!r}]['components']`; "
            "fit an SAE with `sl.tl.fit_sae` to get one."
        )
        raise TypeError(msg)
    missing = [n for n in need if not isinstance(run, dict) or n not in run]
    if missing:
        msg = f"`adata.uns[{key!r}]` lacks {missing}; it was not written by `sl.tl.fit_sae` / `sl.tl.encode`."
        raise KeyError(msg)
    return run


@doc_params()
def sae(adata: AnnData, *, key: str = "sae") -> SparseAutoencoder:
    """Rebuild the sparse autoencoder stored by :func:`sclens.tl.fit_sae` (also after ``read_h5ad``).

    Parameters
    ----------
    {adata}
    {key}

    Returns
    -------
    A :class:`sclens.sae.SparseAutoencoder` in eval mode on CPU; ``encode(x)`` maps raw embedding
    rows (tensor n x d) to dense activations (n x F), ``decode(z)`` maps back to embedding units.
    """
    from ..sae import from_arrays

    run = sae_run(adata, key)
    params, weights = run["params"], run["weights"]
    for name, value in (("params", params), ("weights", weights)):
        if not isinstance(value, Mapping):
            msg = f"`adata.uns[{key!r}][{name!r}]` is a {type(value).__name__}, not a dict; refit with `sl.tl.fit_sae`."
            raise TypeError(msg)
    return from_arrays(dict(params), dict(weights), source=f"`adata.uns[{key!r}]['weights']`")

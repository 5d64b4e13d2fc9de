"""``sl.get.sae``: rebuild a fitted sparse autoencoder from ``adata.uns`` alone."""

from __future__ import annotations

from anndata import AnnData

from .._docs import doc_params
from .._readers import sae_run
from ..sae import SparseAutoencoder


@doc_params()
def sae(adata: AnnData, *, sae_key: str = "sae") -> SparseAutoencoder:
    """Rebuild the sparse autoencoder stored by :func:`sclens.tl.fit_sae` (also after ``read_h5ad``).

    Parameters
    ----------
    {adata}
    {sae_key}

    Returns
    -------
    A :class:`sclens.sae.SparseAutoencoder` in eval mode on CPU; ``encode(x)`` maps raw embedding
    rows (tensor n x d) to dense activations (n x F), ``decode(z)`` maps back to embedding units.
    """
    from ..sae import from_arrays

    run = sae_run(adata, sae_key)
    return from_arrays(dict(run["params"]), dict(run["weights"]), source=f"`adata.uns[{sae_key!r}]['weights']`")

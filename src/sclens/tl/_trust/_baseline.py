"""``sl.tl.baseline_features``: PCA / ICA / NMF components stored like an SAE run, as baselines."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ... import _provenance as provenance
from ..._docs import doc_params
from ..._utils import as_dense_float32, check_adata, check_key_added, get_rep, resolve_seed, writable
from .._fit_checks import check_embedding, check_spread

logger = logging.getLogger("sclens")

METHODS = ("pca", "ica", "nmf")


def _fit(x: np.ndarray, method: str, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (cells x k), reconstruction of ``x`` and components (k x dims) of one decomposition."""
    if method == "pca":
        from sklearn.decomposition import PCA

        model = PCA(n_components=n_components, random_state=seed)
        scores = model.fit_transform(x)
        return scores, model.inverse_transform(scores), model.components_
    if method == "ica":
        from sklearn.decomposition import FastICA

        model = FastICA(n_components=n_components, random_state=seed, whiten="unit-variance", max_iter=1000)
        scores = model.fit_transform(x)
        return scores, model.inverse_transform(scores), model.mixing_.T
    from sklearn.decomposition import NMF

    shift = np.minimum(x.min(axis=0), 0.0)  # NMF needs non-negative input: shift signed columns
    model = NMF(n_components=n_components, random_state=seed, init="nndsvda", max_iter=1000)
    scores = model.fit_transform(x - shift)
    return scores, scores @ model.components_ + shift, model.components_


def _activations(scores: np.ndarray, method: str) -> tuple[sparse.csr_matrix, pd.DataFrame]:
    """Non-negative activations (signed scores split into positive and negative parts) and their origin."""
    k = scores.shape[1]
    if method == "nmf":
        parts, component, sign = scores, np.arange(k), np.full(k, "+")
    else:
        parts = np.hstack([np.maximum(scores, 0), np.maximum(-scores, 0)])
        component, sign = np.tile(np.arange(k), 2), np.repeat(["+", "-"], k)
    acts = sparse.csr_matrix(parts.astype(np.float32))
    acts.eliminate_zeros()
    dense_max = np.asarray(acts.max(axis=0).todense()).ravel()
    freq = np.diff(acts.tocsc().indptr) / acts.shape[0]
    table = pd.DataFrame(
        {
            "frequency": freq.astype(np.float64),
            "mean_activation": np.asarray(acts.mean(axis=0)).ravel().astype(np.float64),
            "max_activation": dense_max.astype(np.float64),
            "kind": np.where(freq > 0, "live", "dead").astype(object),
            "component": component.astype(np.int64),
            "sign": sign.astype(object),
        },
        index=pd.Index([str(i) for i in range(acts.shape[1])]),
    )
    return acts, table


@doc_params()
def baseline_features(
    adata: AnnData,
    *,
    use_rep: str,
    method: Literal["pca", "ica", "nmf"] = "ica",
    n_components: int | None = None,
    random_state: int | None = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Linear baseline "features" of an embedding (PCA, ICA or NMF), stored exactly like an SAE run.

    The paper found the SAE no better than PCA / ICA at recovering known variables in simulation;
    this puts a baseline through the same pipeline: :func:`feature_specificity`,
    :func:`annotate_features`, :func:`feature_alignment`, :func:`annotation_null`,
    :func:`compare_runs` and the plots read it with ``sae_key=key_added``.

    * ``"pca"``: principal components (:class:`sklearn.decomposition.PCA`);
    * ``"ica"``: independent components (:class:`sklearn.decomposition.FastICA`, unit-variance
      whitening);
    * ``"nmf"``: non-negative factors (:class:`sklearn.decomposition.NMF`) of the embedding shifted
      so that every column is non-negative (``x - min(min(x), 0)`` per dimension).

    SAE features are non-negative, so each signed PCA / ICA component ``c`` becomes two features:
    ``c`` (its positive part) and ``n_components + c`` (its negative part, sign flipped). There is no
    encoder to rebuild: :func:`sclens.get.sae` and :func:`encode` refuse a baseline run.

    Parameters
    ----------
    {adata}
    {use_rep}
    method
        ``"pca"``, ``"ica"`` or ``"nmf"``.
    n_components
        Number of components; ``None``: the number of embedding dimensions.
    {random_state}
    key_added
        Key of the run; ``None``: ``f"{{method}}_baseline"`` (not ``"pca"``: ``obsm["X_pca"]`` is scanpy's).
        An existing ``obsm[f"X_{{key_added}}"]`` is only replaced when it holds a baseline run.
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.obsm[f'X_{{key_added}}']``: activations, cells x features (CSR float32, non-negative);
    * ``adata.uns[key_added]``: ``params`` (``method``, ``use_rep``, ``n_components``,
      ``random_state``, ``source="baseline_features"``), ``metrics`` (``fvu``: fraction of the
      embedding's variance the components leave unexplained; ``l0``; ``dead_fraction``;
      ``n_live``), ``components`` (components x dims), ``run_id`` and ``features`` (``frequency``,
      ``mean_activation``, ``max_activation``, ``kind``, ``component``, ``sign``).
    """
    check_adata(adata)
    if method not in METHODS:
        msg = f"method must be one of {METHODS}, got {method!r}."
        raise ValueError(msg)
    x = get_rep(adata, use_rep)
    check_embedding(x, use_rep)
    x = as_dense_float32(x, name=f"`obsm[{use_rep!r}]`").astype(np.float64)
    check_spread(x, use_rep)  # a constant embedding has no components (FastICA fails deep inside on it)
    n_dims = x.shape[1]
    k = n_dims if n_components is None else int(n_components)
    if not 1 <= k <= min(n_dims, x.shape[0]):
        msg = f"n_components must be between 1 and {min(n_dims, x.shape[0])} (embedding dims), got {n_components!r}."
        raise ValueError(msg)
    key = key_added or f"{method}_baseline"
    check_key_added(key)
    previous = adata.uns.get(key)
    is_baseline = isinstance(previous, dict) and previous.get("params", {}).get("source") == "baseline_features"
    if (f"X_{key}" in adata.obsm or key in adata.uns) and not is_baseline:
        msg = (
            f"`adata.obsm['X_{key}']` or `adata.uns[{key!r}]` already exists and is not a baseline run; "
            f"pass another `key_added` (e.g. {f'{method}_baseline'!r}) to keep it."
        )
        raise ValueError(msg)
    seed = resolve_seed(random_state)
    scores, recon, comps = _fit(x, method, k, seed)
    acts, table = _activations(scores, method)
    denom = float(((x - x.mean(axis=0)) ** 2).sum())
    fvu = float(((x - recon) ** 2).sum() / denom) if denom > 0 else 0.0
    n_live = int((table["kind"] == "live").sum())
    metrics = {
        "fvu": fvu, "l0": float(np.diff(acts.indptr).mean()), "dead_fraction": 1.0 - n_live / len(table),
        "n_live": n_live,
    }  # fmt: skip
    params = {
        "method": method, "architecture": method, "use_rep": use_rep, "n_components": k,
        "n_features": int(acts.shape[1]), "random_state": seed, "source": "baseline_features",
    }  # fmt: skip
    adata = writable(adata, copy=copy)
    if is_baseline:
        provenance.drop_stale(adata, key)
    adata.obsm[f"X_{key}"] = acts
    adata.uns[key] = {
        "params": params, "metrics": metrics, "components": np.asarray(comps, dtype=np.float32),
        "run_id": provenance.new_run_id(), "features": table,
    }  # fmt: skip
    logger.info("baseline_features: %s with %d components, FVU %.4f", method, k, fvu)
    return adata if copy else None

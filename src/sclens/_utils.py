"""Input checks and small helpers shared by the public functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from ._settings import settings

if TYPE_CHECKING:
    from anndata import AnnData


def is_mudata(adata: Any) -> bool:
    """Whether ``adata`` is a MuData object (without importing mudata eagerly)."""
    return type(adata).__name__ == "MuData" and hasattr(adata, "mod")


def check_adata(adata: Any) -> None:
    """Raise a TypeError unless ``adata`` is an AnnData or a MuData."""
    from anndata import AnnData

    if not isinstance(adata, AnnData) and not is_mudata(adata):
        msg = f"Expected an AnnData or MuData object, got {type(adata).__name__}."
        raise TypeError(msg)


def resolve_obsm(adata: AnnData, use_rep: str) -> tuple[Any, str]:
    """Return ``(container, key)`` where ``container.obsm[key]`` is the requested array.

    For a MuData, ``"mod:key"`` addresses a modality's obsm; a plain key is looked up in the
    global obsm first and then in each modality.
    """
    check_adata(adata)
    if not isinstance(use_rep, str) or not use_rep:
        msg = f"use_rep must be a non-empty string naming a key of adata.obsm, got {use_rep!r}."
        raise TypeError(msg)
    if is_mudata(adata):
        if ":" in use_rep:
            mod, key = use_rep.split(":", 1)
            if mod not in adata.mod:
                msg = f"Modality {mod!r} not found in the MuData; available: {list(adata.mod)}."
                raise KeyError(msg)
            container = adata.mod[mod]
            if container.n_obs != adata.n_obs:
                msg = (
                    f"Modality {mod!r} has {container.n_obs} cells but the MuData has {adata.n_obs}; "
                    "run `mudata.MuData.intersect_obs()` or use the global obsm."
                )
                raise ValueError(msg)
            _require_key(container, key, where=f"adata.mod[{mod!r}].obsm")
            return container, key
        if use_rep in adata.obsm:
            return adata, use_rep
        hits = [m for m, a in adata.mod.items() if use_rep in a.obsm]
        if len(hits) == 1 and adata.mod[hits[0]].n_obs == adata.n_obs:
            return adata.mod[hits[0]], use_rep
        _require_key(adata, use_rep, where="adata.obsm")
    _require_key(adata, use_rep, where="adata.obsm")
    return adata, use_rep


def _require_key(container: Any, key: str, *, where: str) -> None:
    if key not in container.obsm:
        avail = list(container.obsm.keys())
        msg = (
            f"`{where}[{key!r}]` not found; available keys: {avail or 'none'}. "
            "Compute an embedding first, e.g. `scvi.model.SCVI(adata).get_latent_representation()` "
            "or `sc.pp.pca(adata)`, and store it in obsm."
        )
        raise KeyError(msg)


def get_rep(adata: AnnData, use_rep: str) -> Any:
    """The embedding ``adata.obsm[use_rep]`` as stored (numpy, sparse, dask or backed array)."""
    container, key = resolve_obsm(adata, use_rep)
    x = container.obsm[key]
    if hasattr(x, "columns"):  # a DataFrame in obsm
        x = x.to_numpy()
    if x.ndim != 2:
        msg = f"`obsm[{use_rep!r}]` must be 2-dimensional (cells x dims), got shape {x.shape}."
        raise ValueError(msg)
    return x


def as_dense_float32(x: Any, *, name: str = "embedding") -> np.ndarray:
    """Convert a (chunk of an) embedding to a C-contiguous float32 array and check it is finite."""
    if sparse.issparse(x):
        x = x.toarray()
    elif hasattr(x, "compute"):  # dask
        x = x.compute()
    x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        msg = (
            f"The {name} contains NaN or infinite values in {bad} cell(s); "
            "remove or impute those cells (e.g. `adata = adata[np.isfinite(X).all(1)]`) first."
        )
        raise ValueError(msg)
    return x


def resolve_seed(random_state: int | None) -> int:
    """Seed from ``random_state`` or ``sclens.settings.seed``."""
    if random_state is None:
        return int(settings.seed)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        msg = f"random_state must be an integer or None, got {random_state!r}."
        raise TypeError(msg)
    return int(random_state)


def progress(iterable: Any = None, **kwargs: Any):
    """A ``tqdm.auto`` progress bar, disabled unless ``sclens.settings.verbosity >= 2``."""
    kwargs.setdefault("disable", not settings.progress)
    if kwargs["disable"]:  # tqdm.auto warns in notebooks without ipywidgets even when disabled
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def sae_activations(adata: AnnData, key: str, *, need_uns: bool = True) -> sparse.csr_matrix:
    """SAE activations ``adata.obsm[f"X_{key}"]`` as a new CSR float32 matrix without explicit zeros.

    Raises a KeyError that says how to create the run when it is missing (``need_uns``: the run's
    ``adata.uns[key]`` must exist too) and a ValueError when the matrix is not cells x features.
    """
    check_adata(adata)
    name = f"X_{key}"
    if name not in adata.obsm or (need_uns and key not in adata.uns):
        needed = f"`adata.obsm[{name!r}]`" + (f" and `adata.uns[{key!r}]`" if need_uns else "")
        msg = (
            f"No SAE run under key {key!r} (it needs {needed}); "
            f"run `sl.tl.fit_sae(adata, use_rep=..., key_added={key!r})` first."
        )
        raise KeyError(msg)
    acts = adata.obsm[name]
    acts = sparse.csr_matrix(acts, dtype=np.float32, copy=True)
    if acts.shape[0] != adata.n_obs:
        msg = f"`adata.obsm[{name!r}]` must be cells x features, got shape {acts.shape}."
        raise ValueError(msg)
    acts.eliminate_zeros()
    return acts


def update_features_table(run: dict, columns: Any, *, n_features: int | None = None) -> None:
    """Add or replace columns of ``run["features"]`` by name (the one writer of the features table).

    ``run`` is an SAE run's ``uns`` entry; ``columns`` a DataFrame indexed by feature (``"0"`` ..
    ``"F-1"``, any subset; rows not given keep their values, new columns get missing values there).
    The table is copied before writing, so a table shared with another AnnData (e.g. a view's
    parent) is never changed in place.
    """
    import pandas as pd

    table = run.get("features")
    if not isinstance(table, pd.DataFrame):
        if n_features is None:
            msg = "The SAE run has no features table; pass `n_features` to create one."
            raise KeyError(msg)
        table = pd.DataFrame(index=pd.Index([str(i) for i in range(n_features)]))
    table = table.copy()
    table.index = table.index.astype(str)
    columns = columns.copy()
    columns.index = columns.index.astype(str)
    unknown = columns.index.difference(table.index)
    if len(unknown):
        msg = f"Features {list(unknown[:5])} are not in the SAE run's features table ({len(table)} features)."
        raise KeyError(msg)
    for col in columns.columns:
        if col in table.columns and len(columns) == len(table):
            table[col] = columns[col].reindex(table.index).to_numpy()
        elif col in table.columns:
            table.loc[columns.index, col] = columns[col].to_numpy()
        else:
            table[col] = columns[col].reindex(table.index)
    run["features"] = table

"""Input checks and small helpers shared by the public functions."""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
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
    """Return the embedding ``adata.obsm[use_rep]`` as stored (numpy, sparse, dask or backed array)."""
    container, key = resolve_obsm(adata, use_rep)
    x = container.obsm[key]
    if hasattr(x, "columns"):  # a DataFrame in obsm
        x = x.to_numpy()
    if x.ndim != 2:
        msg = f"`obsm[{use_rep!r}]` must be 2-dimensional (cells x dims), got shape {x.shape}."
        raise ValueError(msg)
    return x


def get_layer(adata: AnnData, layer: str | None, *, what: str = "counts") -> Any:
    """``adata.layers[layer]`` (``adata.X`` when ``layer`` is ``None``), with an error listing the layers."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        msg = (
            f"`adata.layers[{layer!r}]` not found; available layers: {list(adata.layers) or 'none'}. "
            f"Pass `layer=` naming the layer with {what} (e.g. store `adata.layers['counts'] = adata.X.copy()` "
            "before normalising)."
        )
        raise KeyError(msg)
    return adata.layers[layer]


#: longest line read from a text file (GMT / OBO / GAF), in characters: 16 Mi, about 1.5 million gene symbols
MAX_LINE = 16 * 2**20


class _TextFile:
    """Lines of a plain or gzip text file; decoding and gzip errors become ValueErrors naming the file."""

    def __init__(self, path: os.PathLike, *, gz: bool) -> None:
        self.path, self.gz = path, gz

    def __enter__(self) -> _TextFile:
        import gzip

        self.fh = gzip.open(self.path, "rt", encoding="utf-8") if self.gz else open(self.path, encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def __iter__(self):
        try:
            for lineno in itertools.count(1):
                line = self.fh.readline(MAX_LINE + 1)  # never more than MAX_LINE characters in memory
                if not line:
                    return
                if len(line) > MAX_LINE:
                    msg = (
                        f"Line {lineno} of {str(self.path)!r} is longer than {MAX_LINE:,} characters; a GMT, OBO "
                        "or GAF line is far shorter (the largest gene sets hold tens of thousands of genes). "
                        "The file is damaged or not a gene-set file."
                    )
                    raise ValueError(msg)
                yield line
        except UnicodeDecodeError as e:
            msg = (
                f"{str(self.path)!r} is not UTF-8 text (invalid byte at position {e.start}): it is binary or "
                "in another encoding; re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)."
            )
            raise ValueError(msg) from e
        except (EOFError, OSError, zlib.error) as e:
            msg = f"{str(self.path)!r} is a corrupt or truncated gzip file ({e}); download or compress it again."
            raise ValueError(msg) from e


def open_text(path: str | os.PathLike) -> _TextFile:
    """Lines of ``path`` (UTF-8), gunzipped transparently; unreadable content raises a ValueError naming the file."""
    path = Path(path)
    if path.is_dir():
        msg = f"{str(path)!r} is a directory; pass the path of a file in it."
        raise IsADirectoryError(msg)
    if not path.is_file():
        msg = f"File {str(path)!r} not found."
        raise FileNotFoundError(msg)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return _TextFile(path, gz=magic == b"\x1f\x8b")


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


def writable(adata: AnnData, *, copy: bool = False) -> AnnData:
    """Return the AnnData a public writer writes to: a copy when ``copy``, else ``adata`` itself.

    A view is first turned into an actual AnnData (as anndata does on assignment and scanpy's
    ``view_to_actual``), so nested ``uns`` objects shared with the parent are never changed.
    """
    if copy:
        return adata.copy()
    if getattr(adata, "is_view", False):
        from anndata import ImplicitModificationWarning

        warnings.warn(
            "Received a view of an AnnData; making it an actual AnnData so its parent is not changed.",
            ImplicitModificationWarning,
            stacklevel=3,
        )
        adata._init_as_actual(adata.copy())
    return adata


def check_key_added(key_added: Any, *, reserved: dict[str, str] | None = None) -> None:
    """``key_added`` must be a non-empty string without ``/`` and not one of ``reserved`` (key -> what it holds)."""
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        msg = f"key_added must be a non-empty string without '/' (it names an `adata.uns` entry), got {key_added!r}."
        raise ValueError(msg)
    if reserved and key_added in reserved:
        msg = f"key_added={key_added!r} would overwrite {reserved[key_added]}; choose another key_added."
        raise ValueError(msg)


MAX_NUMERIC_GROUPS = 50


def group_labels(adata: AnnData, groupby: str) -> tuple[Any, int]:
    """``adata.obs[groupby]`` as a categorical Series (unused categories removed) and its number of missing labels.

    Cells with a missing label belong to no group (every function leaves them out and says how many).
    A numeric column with more than ``MAX_NUMERIC_GROUPS`` distinct values is refused: it is a
    measurement, not a grouping.
    """
    import pandas as pd

    if not isinstance(groupby, str):
        msg = f"groupby must be the name of an `adata.obs` column (a string), got {type(groupby).__name__}."
        raise TypeError(msg)
    if groupby not in adata.obs.columns:
        msg = f"`adata.obs[{groupby!r}]` not found; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    col = adata.obs[groupby]
    if not isinstance(col.dtype, pd.CategoricalDtype) and pd.api.types.is_numeric_dtype(col.dtype):
        n_values = int(col.nunique())
        if not pd.api.types.is_bool_dtype(col.dtype) and n_values > MAX_NUMERIC_GROUPS:
            msg = (
                f"`adata.obs[{groupby!r}]` is numeric with {n_values} distinct values, not a grouping of cells; "
                f"bin it first, e.g. `adata.obs['{groupby}_bin'] = pd.cut(adata.obs[{groupby!r}], 5)`, "
                "or pass a categorical column (cell types, clusters)."
            )
            raise ValueError(msg)
    cat = col.astype("category").cat.remove_unused_categories()
    return cat, int(cat.isna().sum())


def resolve_seed(random_state: int | None) -> int:
    """Seed from ``random_state`` or ``sclens.settings.seed``."""
    if random_state is None:
        return int(settings.seed)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        msg = f"random_state must be an integer or None, got {random_state!r}."
        raise TypeError(msg)
    return int(random_state)


def progress(iterable: Any = None, **kwargs: Any):
    """Return a ``tqdm.auto`` progress bar, disabled unless ``sclens.settings.verbosity >= 2``."""
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
    check_sae_keys(adata, key, need_uns=need_uns)
    name = f"X_{key}"
    acts = sparse.csr_matrix(adata.obsm[name], dtype=np.float32, copy=True)
    if not np.isfinite(acts.data).all():
        msg = (
            f"`adata.obsm[{name!r}]` contains NaN or infinite activations; the SAE run is damaged. "
            f"Re-encode with `sl.tl.encode(adata, key_added={key!r})` or refit with `sl.tl.fit_sae`."
        )
        raise ValueError(msg)
    acts.eliminate_zeros()
    return acts


def check_sae_keys(adata: AnnData, key: str, *, need_uns: bool = True) -> None:
    """Check that ``adata.obsm[f"X_{key}"]`` (cells x features) and, with ``need_uns``, ``adata.uns[key]`` exist."""
    check_adata(adata)
    name = f"X_{key}"
    if name not in adata.obsm or (need_uns and key not in adata.uns):
        needed = f"`adata.obsm[{name!r}]`" + (f" and `adata.uns[{key!r}]`" if need_uns else "")
        msg = (
            f"No SAE run under key {key!r} (it needs {needed}); "
            f"run `sl.tl.fit_sae(adata, use_rep=..., key_added={key!r})` first."
        )
        raise KeyError(msg)
    if need_uns and not isinstance(adata.uns[key], Mapping):
        msg = (
            f"`adata.uns[{key!r}]` is a {type(adata.uns[key]).__name__}, not an SAE run (a dict written by "
            f"`sl.tl.fit_sae`); it was overwritten. Refit with `sl.tl.fit_sae(adata, use_rep=..., key_added={key!r})`."
        )
        raise TypeError(msg)
    shape = adata.obsm[name].shape
    if len(shape) != 2 or shape[0] != adata.n_obs:
        msg = f"`adata.obsm[{name!r}]` must be cells x features, got shape {shape}."
        raise ValueError(msg)


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed to ``path`` only when the block succeeds.

    A failed or interrupted write never leaves a half-written ``path`` (nor the temporary file).
    """
    path = Path(path)
    if not path.parent.exists():
        msg = f"Directory {str(path.parent)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def all_or_nothing(adata: AnnData) -> Iterator[None]:
    """Undo the block's changes to ``adata.uns`` (two levels deep) and ``adata.obsm`` if it raises.

    Also on ``KeyboardInterrupt``: a writer that stores several entries (a run, its features table,
    the results dropped as stale) leaves either all of them or the AnnData as it was.
    """
    nested = {k: v for k, v in adata.uns.items() if isinstance(v, dict)}
    uns = {k: (dict(v) if k in nested else v) for k, v in adata.uns.items()}
    obsm = dict(adata.obsm)
    try:
        yield
    except BaseException:
        for k in [k for k in adata.uns if k not in uns]:
            del adata.uns[k]
        for k, v in uns.items():
            if k in nested:  # the same dict object, its entries as they were
                nested[k].clear()
                nested[k].update(v)
                v = nested[k]
            adata.uns[k] = v
        for k in [k for k in adata.obsm if k not in obsm]:
            del adata.obsm[k]
        for k, v in obsm.items():
            adata.obsm[k] = v
        raise


def as_feature_list(features: Any, n_features: int | None = None) -> list[int]:
    """``features`` (one number or a sequence) as a non-empty list of ints, range-checked when ``n_features``."""
    feats = [features] if isinstance(features, (int, np.integer, str)) or np.ndim(features) == 0 else list(features)
    if not feats:
        msg = "features is empty; pass at least one feature index."
        raise ValueError(msg)
    if any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) for f in feats):
        msg = f"features must be a feature number (an integer) or a sequence of them, got {features!r}."
        raise TypeError(msg)
    for f in feats:
        if n_features is not None and not 0 <= f < n_features:
            msg = f"feature {int(f)} is out of range: this SAE has {n_features} features (0..{n_features - 1})."
            raise ValueError(msg)
    return [int(f) for f in feats]

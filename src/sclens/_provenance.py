"""Which SAE run a derived result came from: run ids, checks on read, clean-up on refit.

Every SAE run written by :func:`sclens.tl.fit_sae` / :func:`sclens.tl.encode` carries a unique
``adata.uns[sae_key]['run_id']`` (a uuid4 hex string, survives ``write_h5ad``). Every result
derived from a run records it as ``sae_run_id`` in its ``params`` (see :mod:`sclens._readers`, the
one layout); an annotation carries its own ``run_id`` too, recorded as ``annotation_run_id``.
Readers call :func:`check_run_id` (through :func:`sclens._readers.result`); writers of a new SAE
run call :func:`drop_stale` first.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._warnings import SclensWarning

if TYPE_CHECKING:
    from anndata import AnnData

# entries of an SAE run's uns dict written by fit_sae / encode themselves (not derived results)
RUN_ENTRIES = frozenset({"params", "metrics", "weights", "features", "run_id"})


class StaleResultWarning(SclensWarning):
    """Results derived from an SAE run were dropped because the run was replaced."""


def new_run_id() -> str:
    """Return a fresh unique run id (uuid4 hex)."""
    return uuid.uuid4().hex


def run_id(adata: AnnData, key: str | None = "sae") -> str | None:
    """Return the run id of ``adata.uns[key]`` (an SAE run or an annotation; ``None`` when absent)."""
    run = adata.uns.get(key) if key is not None else None
    if not isinstance(run, Mapping) or "run_id" not in run:
        return None
    return str(run["run_id"])


def recorded_run_id(result: Any) -> str | None:
    """Return the ``sae_run_id`` a derived result recorded (in itself or in its ``params``), if any."""
    if not isinstance(result, Mapping):
        return None
    if "sae_run_id" in result:
        return str(result["sae_run_id"])
    params = result.get("params")
    if isinstance(params, Mapping) and "sae_run_id" in params:
        return str(params["sae_run_id"])
    return None


def check_run_id(adata: AnnData, *, key: str, recorded: Any, what: str, rerun: str, run: str = "SAE") -> None:
    """Refuse a derived result whose recorded run id is not that of the run now in ``adata.uns[key]``.

    ``what`` names the result (``"`adata.uns['sae_go']`"``), ``rerun`` the call that recomputes it,
    ``run`` the kind of run (``"SAE"``, ``"annotation"``). Results without a recorded id (written
    before run ids existed) are accepted.
    """
    if recorded is None:
        return
    recorded, current = str(recorded), run_id(adata, key)
    if current == recorded:
        return
    now = f"run {current}" if current is not None else f"no {run} run"
    msg = (
        f"{what} was computed from {run} run {recorded}, but `adata.uns[{key!r}]` now holds {now} "
        f"(it was re-run or replaced); the result is stale. Re-run `{rerun}`."
    )
    raise ValueError(msg)


def _sae_key_of(result: Mapping) -> str | None:
    params = result.get("params")
    if not isinstance(params, Mapping):
        return None
    for name in ("sae_key", "key"):
        if name in params:
            return str(params[name])
    return None


def drop_stale(adata: AnnData, sae_key: str) -> None:
    """Before a new run replaces ``adata.uns[sae_key]``, drop the results derived from the old one.

    Dropped: the old run's own derived entries (everything but :data:`RUN_ENTRIES`) and every
    top-level ``uns`` entry that recorded the old run's id (or, for results written before run ids,
    names ``sae_key`` as its SAE key). A :class:`StaleResultWarning` names what was dropped.
    """
    old = adata.uns.get(sae_key)
    if not isinstance(old, Mapping):
        return
    old_id = run_id(adata, sae_key)
    dropped = [f"uns[{sae_key!r}][{k!r}]" for k in old if k not in RUN_ENTRIES]
    for name, value in list(adata.uns.items()):
        if name == sae_key or not isinstance(value, Mapping):
            continue
        rec = recorded_run_id(value)
        if (old_id is not None and rec == old_id) or (rec is None and _sae_key_of(value) == sae_key):
            del adata.uns[name]
            dropped.append(f"uns[{name!r}]")
    if dropped:
        warnings.warn(
            f"The SAE run under {sae_key!r} was replaced; results derived from the old run were dropped: "
            f"{', '.join(dropped)}. Re-run the functions that made them.",
            StaleResultWarning,
            stacklevel=4,  # drop_stale <- the writer's helper <- the public function <- the user
        )

"""``sl.tl.feature_absorption``: a coarse type's feature stays silent where a subtype's feature fires instead."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._docs import doc_params
from ..._readers import sae_run, store_result
from ..._utils import check_key_added, sae_activations, writable
from .._specificity import _one_hot, _rank_auc
from ._trust_utils import obs_codes

logger = logging.getLogger("sclens")


def _coarse_of(adata: AnnData, fine_names: list[str], fine: str, coarse: str | Mapping) -> np.ndarray:
    """Return the coarse label of every fine category, from a column of ``adata.obs`` or a mapping fine -> coarse."""
    if isinstance(coarse, Mapping):
        missing = [f for f in fine_names if f not in coarse]
        if missing:
            msg = f"coarse mapping lacks fine categories {missing[:5]}; map every category of `obs[{fine!r}]`."
            raise ValueError(msg)
        return np.asarray([str(coarse[f]) for f in fine_names], dtype=object)
    codes, _ = obs_codes(adata, fine)
    if coarse not in adata.obs.columns:
        msg = f"coarse={coarse!r} is neither a column of adata.obs nor a mapping of fine to coarse types."
        raise KeyError(msg)
    col = adata.obs[coarse].astype(str).to_numpy()
    out = []
    for i, name in enumerate(fine_names):
        parents = set(col[codes == i])
        if len(parents) > 1:
            msg = (
                f"Fine category {name!r} of `obs[{fine!r}]` lies in several `obs[{coarse!r}]` categories "
                f"{sorted(parents)[:5]}; a hierarchy needs one coarse type per fine type."
            )
            raise ValueError(msg)
        out.append(parents.pop())
    return np.asarray(out, dtype=object)


def _auroc(act: sparse.csr_matrix, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """AUROC (groups x features) of each group of ``codes`` against the other cells given."""
    onehot = _one_hot(codes, n_groups)
    return _rank_auc(act, onehot, np.asarray(onehot.sum(axis=0)).ravel())[0]


def _one_coarse(act, fine_codes, members, coarse_feature, min_auroc, names) -> list[dict]:
    """Rows of one coarse type: per subtype, silent and absorbed shares of its cells and the absorbing features."""
    in_c = np.isin(fine_codes, members)
    sub = act[in_c]
    local = np.searchsorted(members, fine_codes[in_c])
    sibling_auc = _auroc(sub, local, len(members))  # each subtype against its siblings
    sibling_auc[:, coarse_feature] = 0.0
    fires = sub.astype(bool).tocsc()
    coarse_on = fires[:, coarse_feature].toarray().ravel()
    rows = []
    for i, f in enumerate(members):
        cells = local == i
        absorbing = np.flatnonzero(sibling_auc[i] >= min_auroc)
        other_on = (
            np.asarray(fires[:, absorbing].sum(axis=1)).ravel() > 0 if absorbing.size else np.zeros(cells.size, bool)
        )
        rows.append({
            "fine": names[f], "n_cells": int(cells.sum()),
            "silent_fraction": float((~coarse_on[cells]).mean()),
            "absorption_fraction": float((~coarse_on[cells] & other_on[cells]).mean()),
            "absorbing_features": ",".join(str(int(j)) for j in absorbing),
        })  # fmt: skip
    return rows


@doc_params()
def feature_absorption(
    adata: AnnData,
    *,
    fine: str,
    coarse: str | Mapping[str, str],
    sae_key: str = "sae",
    min_auroc: float = 0.8,
    key_added: str = "absorption",
    copy: bool = False,
) -> AnnData | None:
    """Feature absorption along a label hierarchy (SAEBench's first-letter absorption, with cell types).

    For every coarse type with two or more fine subtypes, its feature is the live feature with the
    highest AUROC for the coarse type against all other cells. A subtype's *absorbing* features are
    the other features that separate it from its sibling subtypes (AUROC >= ``min_auroc`` among the
    coarse type's cells). A cell of the subtype is *absorbed* when the coarse feature is silent
    (zero) in it while one of the subtype's absorbing features fires: the subtype feature has taken
    over the coarse concept there, so "the cells of the coarse type" cannot be read off one feature
    (Chanin et al. 2024; Karvonen et al. 2025). Sparsity favours absorption: an SAE that may use
    very few features per cell merges "coarse + subtype" into one feature.

    Parameters
    ----------
    {adata}
    fine
        Column of ``adata.obs`` with the fine labels (subtypes).
    coarse
        Column of ``adata.obs`` with the coarse labels (each fine label inside one coarse label), or
        a mapping fine label -> coarse label.
    {sae_key}
    min_auroc
        AUROC against the sibling subtypes from which a feature counts as subtype-specific.
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['results']``: one row per fine subtype of a coarse type with
      two or more: ``coarse``, ``coarse_feature``, ``coarse_auroc``, ``fine``, ``n_cells``,
      ``silent_fraction`` (its cells where the coarse feature is zero), ``absorption_fraction``
      (silent while an absorbing feature fires) and ``absorbing_features`` (comma-separated);
    * ``adata.uns[sae_key][key_added]['params']``: ``fine``, ``coarse`` (the column, or ``"mapping"``),
      ``min_auroc``, ``mean_absorption`` (absorbed share of the cells of all coarse types scored),
      ``sae_key`` and ``sae_run_id``.
    """
    sae_run(adata, sae_key, need=(), activations=True)
    if not 0.5 <= min_auroc < 1:
        msg = f"min_auroc must be in [0.5, 1), got {min_auroc!r}."
        raise ValueError(msg)
    if isinstance(coarse, str) and coarse == fine:
        msg = "fine and coarse are the same column; pass the subtype column as `fine` and its parent as `coarse`."
        raise ValueError(msg)
    check_key_added(key_added, reserved={"features": "the SAE run's features table", "params": "the run's params"})
    fine_codes, fine_names = obs_codes(adata, fine)
    parent = _coarse_of(adata, fine_names, fine, coarse)
    coarse_names = sorted(set(parent))
    act = sae_activations(adata, sae_key)
    keep = fine_codes >= 0
    act, fine_codes = act[keep], fine_codes[keep]
    cell_coarse = np.searchsorted(coarse_names, parent[fine_codes].astype(str))
    live = np.diff(act.tocsc().indptr) > 0
    coarse_auc = _auroc(act, cell_coarse, len(coarse_names))
    coarse_auc[:, ~live] = -1.0

    rows = []
    for c, name in enumerate(coarse_names):
        members = np.flatnonzero(parent == name)
        if members.size < 2:
            continue
        feat = int(np.argmax(coarse_auc[c]))
        head = {"coarse": name, "coarse_feature": feat, "coarse_auroc": float(coarse_auc[c, feat])}
        rows += [{**head, **r} for r in _one_coarse(act, fine_codes, members, feat, float(min_auroc), fine_names)]
    if not rows:
        msg = "No coarse type has two or more fine subtypes; absorption needs a hierarchy (check `fine` / `coarse`)."
        raise ValueError(msg)
    results = pd.DataFrame(rows)
    results.index = results.index.astype(str)
    mean = float(np.average(results["absorption_fraction"], weights=results["n_cells"]))
    logger.info("feature_absorption: %.1f%% of the cells of %d coarse types absorbed", 100 * mean,
                results["coarse"].nunique())  # fmt: skip
    adata = writable(adata, copy=copy)
    store_result(
        adata, "absorption", key=key_added, parent=sae_key, tables={"results": results},
        params={"fine": fine, "coarse": coarse if isinstance(coarse, str) else "mapping", "min_auroc": float(min_auroc),
                "mean_absorption": mean},
    )  # fmt: skip
    return adata if copy else None

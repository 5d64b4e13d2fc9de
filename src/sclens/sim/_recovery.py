"""Recovery of hidden variables by SAE features, next to PCA / FastICA / TruncatedSVD baselines."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._docs import doc_params
from .._settings import logger
from .._utils import as_dense_float32, check_adata, get_layer, resolve_seed, sae_activations
from ._targets import correlation, resolve_targets, subsample, target_matrix

BASELINES = ("pca", "ica", "svd")


def live_features(acts: sparse.csr_matrix) -> np.ndarray:
    """Return indices of features that fire (> 0) in at least one cell."""
    return np.flatnonzero(np.asarray(abs(acts).max(axis=0).todense()).ravel() > 0)


def per_variable_table(
    codes: np.ndarray, targets: Mapping[str, np.ndarray], threshold: float, feature_ids: np.ndarray
) -> pd.DataFrame:
    """Best |Pearson r| of each variable with any column of ``codes`` and how many exceed ``threshold``."""
    frames = []
    for family, t in targets.items():
        rf = np.nan_to_num(np.abs(correlation(t, codes)), nan=-1.0)  # constant columns never win
        if rf.shape[1]:
            idx = rf.argmax(axis=1)
            best = rf[np.arange(rf.shape[0]), idx]
        else:
            idx, best = np.zeros(rf.shape[0], dtype=int), np.full(rf.shape[0], -1.0)
        found = best >= 0
        frames.append(
            pd.DataFrame(
                {
                    "family": family,
                    "variable": np.arange(t.shape[1]),
                    "best_r": np.where(found, best, np.nan),
                    "best_feature": np.where(found, feature_ids[idx] if feature_ids.size else -1, -1),
                    "n_above": (rf > threshold).sum(axis=1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def summarize(per_var: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (method, family): mean / median best r, fraction recovered, features per variable, redundancy."""
    g = per_var.groupby(["method", "family"], observed=True, sort=False)
    out = g.agg(
        n_variables=("best_r", "size"),
        mean_best_r=("best_r", "mean"),
        median_best_r=("best_r", "median"),
        frac_recovered=("best_r", lambda s: float((s > threshold).mean())),
        features_per_variable=("n_above", "mean"),
        redundancy=("n_above", lambda s: int((s * (s - 1) // 2).sum())),
    ).reset_index()
    return out


def _baseline_codes(y: np.ndarray, method: str, n_components: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA, FastICA, TruncatedSVD

    n, d = y.shape
    k = max(1, min(n_components, d - 1 if method == "svd" else d, n - 1))
    if method == "pca":
        model = PCA(n_components=k, random_state=seed)
    elif method == "svd":
        model = TruncatedSVD(n_components=k, random_state=seed)
    else:  # ICA on at most the numerical rank of Y (the deterministic Y has rank <= n_programs)
        sv = PCA(n_components=k, random_state=seed).fit(y).singular_values_
        k = max(1, int((sv > sv[0] * 1e-5).sum()))
        model = FastICA(n_components=k, random_state=seed, whiten="unit-variance", whiten_solver="eigh", max_iter=400)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = model.fit_transform(y)
    for w in caught:
        logger.info("%s baseline: %s", method, w.message)
    return codes


@doc_params()
def recovery(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    targets: Sequence[str] | Mapping[str, str] | None = None,
    threshold: float = 0.95,
    baselines: Sequence[str] = BASELINES,
    n_components: int = 150,
    layer: str = "counts",
    max_cells: int | None = 20_000,
    per_variable: bool = False,
    random_state: int | None = 0,
) -> pd.DataFrame:
    r"""How well single SAE features (and PCA / ICA / SVD components) recover the hidden variables.

    For every variable :math:`v` of each family and every live feature :math:`f` (one that fires
    in some cell), the Pearson correlation :math:`r_{{vf}}` over cells is computed. Per variable:
    ``best_r`` :math:`= \max_f |r_{{vf}}|` and ``n_above``, the number of features with
    :math:`|r_{{vf}}|` above ``threshold``. Per family: the mean and median ``best_r``, the fraction of variables
    with ``best_r > threshold``, the mean number of matching features, and the redundancy
    :math:`\sum_v \binom{{n_v}}{{2}}` (pairs of distinct features that both match one variable).
    The same numbers are computed for the components of PCA, FastICA and TruncatedSVD
    (scikit-learn) fitted on Y of the same cells (the paper's Table S5).

    Parameters
    ----------
    {adata}
    {sae_key}
    targets
        Variable families: names among ``"Y"``, ``"X''"``, ``"X'"``, ``"A"``, ``"B"``, ``"X"``
        (default all), or a dict ``{{name: obsm key or "layers:<name>"}}``.
    threshold
        Absolute correlation above which a feature counts as matching a variable.
    baselines
        Any of ``"pca"``, ``"ica"``, ``"svd"``; an empty tuple skips them.
    n_components
        Components of each baseline (the paper used 150; capped by the number of genes).
    layer
        Layer holding Y, on which the baselines are fitted.
    max_cells
        Use a random subset of at most this many cells for all methods (``None``: all).
    per_variable
        Return the per-variable table instead of the per-family summary.
    {random_state}

    Returns
    -------
    DataFrame. Summary (default), one row per (``method``, ``family``): ``n_variables``,
    ``mean_best_r``, ``median_best_r``, ``frac_recovered``, ``features_per_variable``,
    ``redundancy``, ``l0`` (mean non-zero codes per cell), ``n_live`` (live features or
    components), ``n_cells``. With ``per_variable=True``, one row per (``method``, ``family``,
    ``variable``): ``best_r``, ``best_feature``, ``n_above``.
    """
    check_adata(adata)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        msg = f"Unknown baselines {unknown}; choose from {BASELINES}."
        raise ValueError(msg)
    if not 0 < threshold < 1:
        msg = f"threshold must be in (0, 1), got {threshold}."
        raise ValueError(msg)
    if baselines:
        get_layer(adata, layer, what="Y")
    spec = resolve_targets(adata, targets)
    acts = sae_activations(adata, sae_key, need_uns=False)
    seed = resolve_seed(random_state)
    rows = subsample(adata.n_obs, max_cells, seed)
    targets_m = {fam: target_matrix(adata, where, rows) for fam, where in spec.items()}

    live = live_features(acts)
    codes = as_dense_float32(acts[rows][:, live], name="SAE activations")
    tables = [per_variable_table(codes, targets_m, threshold, live).assign(method=sae_key)]
    stats = {sae_key: (float(acts.getnnz(axis=1).mean()), int(live.size))}
    if baselines:
        y = target_matrix(adata, f"layers:{layer}", rows)
        for method in baselines:
            comp = _baseline_codes(y, method, int(n_components), seed)
            ids = np.arange(comp.shape[1])
            tables.append(per_variable_table(comp, targets_m, threshold, ids).assign(method=method))
            stats[method] = (float((comp != 0).sum(axis=1).mean()), int(comp.shape[1]))
    per_var = pd.concat(tables, ignore_index=True)
    per_var = per_var[["method", "family", "variable", "best_r", "best_feature", "n_above"]]
    if per_variable:
        return per_var
    out = summarize(per_var, threshold)
    out["l0"] = out["method"].map(lambda m: stats[m][0])
    out["n_live"] = out["method"].map(lambda m: stats[m][1])
    out["n_cells"] = rows.size
    return out

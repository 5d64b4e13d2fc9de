"""``sl.tl.sparse_probing``: how well k features predict a label on held-out cells (SAEBench's sparse probing)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._docs import doc_params
from ..._readers import sae_run, store_result
from ..._utils import as_dense_float32, check_key_added, get_rep, resolve_seed, sae_activations, writable
from ._baseline import _fit as fit_baseline
from ._trust_utils import as_list, obs_codes

logger = logging.getLogger("sclens")

BASELINES = ("embedding", "pca", "ica")


def held_out_split(adata: AnnData, split_by: str | None, test_size: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of held-out cells: whole groups of ``split_by`` (random order, until ``test_size``), or cells."""
    n = adata.n_obs
    if split_by is None:
        test = np.zeros(n, dtype=bool)
        test[rng.choice(n, max(1, round(test_size * n)), replace=False)] = True
        return test
    codes, names = obs_codes(adata, split_by)
    sizes = np.bincount(codes[codes >= 0], minlength=len(names))
    held: list[int] = []
    for g in rng.permutation(len(names))[:-1]:  # at least one group stays for training
        held.append(int(g))
        if sizes[held].sum() >= test_size * (codes >= 0).sum():
            break
    return np.isin(codes, held)


def standardized_difference(x: Any, y: np.ndarray) -> np.ndarray:
    """``|mean_in - mean_out| / pooled sd`` of every column of ``x`` (cells x columns, dense or sparse) for ``y``."""
    y = np.asarray(y, dtype=bool)
    stats = []
    for part in (x[y], x[~y]):
        n = part.shape[0]
        mean = np.asarray(part.mean(axis=0)).ravel()
        sq = part.multiply(part) if sparse.issparse(part) else part**2
        var = np.maximum(np.asarray(sq.mean(axis=0)).ravel() - mean**2, 0.0) * n / max(n - 1, 1)
        stats.append((n, mean, var))
    (n1, m1, v1), (n0, m0, v0) = stats
    pooled = np.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / max(n1 + n0 - 2, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled > 0, np.abs(m1 - m0) / pooled, 0.0)


def probe_scores(x: Any, y: np.ndarray, test: np.ndarray, ks: Sequence[int], seed: int) -> list[dict[str, float]]:
    """Held-out balanced accuracy and F1 of a logistic probe on the top-``k`` columns (ranked on training cells)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score

    order = np.argsort(-standardized_difference(x[~test], y[~test]), kind="stable")
    out = []
    for k in ks:
        if k > x.shape[1]:
            continue
        cols = order[:k]
        sub = x[:, cols]
        sub = np.asarray(sub.toarray() if sparse.issparse(sub) else sub, dtype=np.float64)
        mean, sd = sub[~test].mean(axis=0), sub[~test].std(axis=0)
        sub = (sub - mean) / np.where(sd > 0, sd, 1.0)
        probe = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
        probe.fit(sub[~test], y[~test])
        pred = probe.predict(sub[test])
        out.append({"k": int(k), "balanced_accuracy": float(balanced_accuracy_score(y[test], pred)),
                    "f1": float(f1_score(y[test], pred, zero_division=0.0)),
                    "features": ",".join(str(int(c)) for c in cols)})  # fmt: skip
    return out


def _matrices(adata: AnnData, sae_key: str, run: dict, baselines: list[str], seed: int) -> dict[str, Any]:
    """Return the SAE activations and the baseline matrices (raw embedding dimensions, PCA / ICA scores)."""
    mats: dict[str, Any] = {"sae": sae_activations(adata, sae_key)}
    if baselines:
        use_rep = run.get("params", {}).get("use_rep")
        if use_rep is None:
            msg = f"`adata.uns[{sae_key!r}]['params']` does not name its embedding (`use_rep`); pass baselines=()."
            raise ValueError(msg)
        emb = as_dense_float32(get_rep(adata, str(use_rep))).astype(np.float64)
        for name in baselines:
            mats[name] = emb if name == "embedding" else _decomposition(emb, name, seed)
    return mats


def _decomposition(emb: np.ndarray, method: str, seed: int) -> np.ndarray:
    """PCA / ICA scores of the embedding; an ICA that stops at its iteration limit is logged, not warned."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = fit_baseline(emb, method, emb.shape[1], seed)[0]
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            logger.info(
                "sparse_probing: the %s baseline stopped at its iteration limit (used as it is).", method.upper()
            )
        else:  # anything else is passed on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return scores


@doc_params()
def sparse_probing(
    adata: AnnData,
    *,
    groupby: str,
    split_by: str | None = None,
    sae_key: str = "sae",
    k: Sequence[int] = (1, 2, 4, 8, 16),
    baselines: Sequence[str] = BASELINES,
    test_size: float = 0.3,
    random_state: int | None = 0,
    key_added: str = "probing",
    copy: bool = False,
) -> AnnData | None:
    """k-sparse probing: how well ``k`` SAE features predict each label of ``groupby`` on held-out cells.

    For every category of ``adata.obs[groupby]`` (one against the rest) and every ``k``, the ``k``
    features with the largest standardized mean difference ``|mean_in - mean_out| / pooled sd``
    between the category and the rest on the training cells are fed to a logistic regression
    (:class:`sklearn.linear_model.LogisticRegression`, balanced class weights, inputs standardized
    on the training cells), and the probe is scored on the held-out cells: balanced accuracy and F1
    (SAEBench's sparse probing, Karvonen et al. 2025, with cell labels in place of text labels). A
    feature dictionary whose features are the cells' biology needs few features per label.

    With ``split_by`` (e.g. ``"donor"`` or ``"batch"``), whole groups are held out (drawn at random
    until they hold ``test_size`` of the cells; at least one group is kept for training), so the
    probes are scored on donors / batches they never saw. The same probes are run on the
    ``baselines``: the raw embedding dimensions (``"embedding"``), and PCA / ICA scores of the
    embedding with as many components as it has dimensions (``"pca"``, ``"ica"``, as
    :func:`baseline_features`). A ``k`` above a method's number of columns is skipped. Categories
    without cells on both sides of the split are left out.

    Parameters
    ----------
    {adata}
    groupby
        Column of ``adata.obs`` with the labels to probe (e.g. cell types).
    split_by
        Column of ``adata.obs`` whose groups are held out whole; ``None``: a random ``test_size`` of cells.
    {sae_key}
    k
        Numbers of features per probe.
    baselines
        Matrices probed the same way: any of ``"embedding"``, ``"pca"``, ``"ica"``.
    test_size
        Fraction of the cells held out.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['results']``: one row per method x category x ``k``: ``method``
      (``"sae"`` or a baseline), ``category``, ``k``, ``balanced_accuracy``, ``f1`` (held out),
      ``features`` (the probe's columns, comma-separated);
    * ``adata.uns[sae_key][key_added]['summary']``: one row per method x ``k``: mean
      ``balanced_accuracy`` and ``macro_f1`` over the categories;
    * ``adata.uns[sae_key][key_added]['params']``: the arguments, ``n_test``, ``test_groups`` (with
      ``split_by``), ``sae_key`` and ``sae_run_id``.
    """
    run = sae_run(adata, sae_key, need=(), activations=True)
    baselines = as_list(baselines, "baselines")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        msg = f"baselines must be among {BASELINES}, got {bad}."
        raise ValueError(msg)
    ks = sorted({int(v) for v in np.atleast_1d(k)})
    if not ks or ks[0] < 1:
        msg = f"k must be one or more positive integers, got {k!r}."
        raise ValueError(msg)
    if not 0 < test_size < 1:
        msg = f"test_size must be in (0, 1), got {test_size!r}."
        raise ValueError(msg)
    if split_by is not None and split_by == groupby:
        msg = f"split_by={split_by!r} is the label probed; hold out donors or batches, not the labels themselves."
        raise ValueError(msg)
    check_key_added(key_added, reserved={"features": "the SAE run's features table", "params": "the run's params"})
    codes, names = obs_codes(adata, groupby)
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    test = held_out_split(adata, split_by, test_size, rng)
    labelled = codes >= 0
    mats = {m: x[labelled] for m, x in _matrices(adata, sae_key, run, baselines, seed).items()}
    codes, test_l = codes[labelled], test[labelled]

    rows = []
    for c, name in enumerate(names):
        y = codes == c
        if not (y[test_l].any() and y[~test_l].any() and (~y[~test_l]).any()):
            logger.warning("sparse_probing: category %r has no cells on one side of the split; left out.", name)
            continue
        for method, x in mats.items():
            rows += [{"method": method, "category": name, **r} for r in probe_scores(x, y, test_l, ks, seed)]
    if not rows:
        msg = f"No category of `adata.obs[{groupby!r}]` has cells in both the training and the held-out part."
        raise ValueError(msg)
    results = pd.DataFrame(rows)
    results.index = results.index.astype(str)
    summary = (
        results.groupby(["method", "k"], sort=False)
        .agg(balanced_accuracy=("balanced_accuracy", "mean"), macro_f1=("f1", "mean"), n_categories=("f1", "size"))
        .reset_index()
    )
    summary.index = summary.index.astype(str)
    logger.info("sparse_probing:\n%s", summary.to_string())
    split_codes, split_names = obs_codes(adata, split_by) if split_by is not None else (None, [])
    test_groups = sorted({split_names[g] for g in np.unique(split_codes[test])}) if split_by is not None else None

    adata = writable(adata, copy=copy)
    store_result(
        adata, "probing", key=key_added, parent=sae_key, tables={"results": results, "summary": summary},
        params={"groupby": groupby, "split_by": split_by, "k": ks, "baselines": baselines,
                "test_size": float(test_size), "random_state": seed, "n_test": int(test.sum()),
                "test_groups": test_groups},
    )  # fmt: skip
    return adata if copy else None

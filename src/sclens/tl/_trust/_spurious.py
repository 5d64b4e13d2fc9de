"""``sl.tl.spurious_removal``: ablate technical features, so that a probe loses the batch and keeps the cell type."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..._docs import doc_params
from ..._features import resolve_features
from ..._readers import sae_run, store_result
from ..._utils import check_key_added, resolve_seed, sae_activations, writable
from .._specificity import _one_hot, _rank_auc
from ._probing import held_out_split
from ._trust_utils import obs_codes

logger = logging.getLogger("sclens")


def _probe(x: sparse.csr_matrix, codes: np.ndarray, test: np.ndarray, seed: int):
    """Return a logistic probe of ``codes`` fitted on the training cells (each column scaled by its maximum)."""
    from sklearn.linear_model import LogisticRegression

    scale = np.asarray(abs(x[~test]).max(axis=0).todense()).ravel()
    scale = sparse.diags(np.where(scale > 0, 1.0 / np.maximum(scale, 1e-30), 0.0))
    model = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x[~test] @ scale, codes[~test])
    return model, scale


def _accuracy(probe, x: sparse.csr_matrix, codes: np.ndarray, test: np.ndarray, ablate: np.ndarray) -> float:
    """Held-out balanced accuracy of ``probe`` with the columns ``ablate`` set to zero."""
    from sklearn.metrics import balanced_accuracy_score

    model, scale = probe
    keep = np.ones(x.shape[1])
    keep[ablate] = 0.0
    pred = model.predict(x[test] @ sparse.diags(keep) @ scale)
    return float(balanced_accuracy_score(codes[test], pred))


def _top_technical(act: sparse.csr_matrix, codes: np.ndarray, n_groups: int, n: int) -> np.ndarray:
    """Return the ``n`` features with the highest AUROC for any technical category (labelled cells only)."""
    keep = codes >= 0
    onehot = _one_hot(codes[keep], n_groups)
    auc, _ = _rank_auc(act[keep], onehot, np.asarray(onehot.sum(axis=0)).ravel())
    return np.argsort(-auc.max(axis=0), kind="stable")[:n]


@doc_params()
def spurious_removal(
    adata: AnnData,
    *,
    groupby: str,
    technical: str,
    sae_key: str = "sae",
    features: int | Sequence[int] | None = None,
    n_features: int = 5,
    n_random: int = 20,
    test_size: float = 0.3,
    random_state: int | None = 0,
    key_added: str = "spurious",
    copy: bool = False,
) -> AnnData | None:
    """Spurious-correlation removal: ablate the technical features and watch two probes (SAEBench's SCR).

    Two logistic probes (:class:`sklearn.linear_model.LogisticRegression`, balanced class weights,
    each feature scaled by its largest training value) are fitted on all SAE features of a training
    part of the cells: one for the technical label (``technical``, e.g. batch or donor), one for the
    biological label (``groupby``). On the held-out cells the chosen features are set to zero and the
    probes' balanced accuracies are measured again. Removing features that carry the batch should
    lower the batch probe's accuracy much more than removing as many random other live features
    (``n_random`` draws), and leave the cell-type probe's accuracy about unchanged. The empirical
    p-value is ``(1 + #random draws that lower the batch accuracy at least as much) / (1 + n_random)``.

    Parameters
    ----------
    {adata}
    groupby
        Column of ``adata.obs`` with the biological labels (cell types).
    technical
        Column of ``adata.obs`` with the technical labels (batch, donor).
    {sae_key}
    features
        Features to ablate, e.g. those flagged ``batch_driven`` by :func:`feature_alignment`;
        ``None``: the ``n_features`` with the highest AUROC for a ``technical`` category.
    n_features
        Number of features ablated when ``features`` is ``None``.
    n_random
        Random sets of as many live features, ablated the same way.
    test_size
        Fraction of the cells held out.
    {random_state}
    {key_added}
    {copy}

    Returns
    -------
    ``None``, or a copy when ``copy=True``; sets

    * ``adata.uns[sae_key][key_added]['results']``: one row per ablation (``"none"``, ``"chosen"``,
      ``"random_0"``, ...): ``ablation``, ``n_ablated``, ``technical_accuracy``, ``groupby_accuracy``;
    * ``adata.uns[sae_key][key_added]['params']``: ``features`` ablated, ``technical_drop`` and
      ``groupby_drop`` (accuracy lost by ablating them), ``random_technical_drop`` and
      ``random_groupby_drop`` (mean over the random sets), ``pvalue``, the arguments, ``sae_key`` and
      ``sae_run_id``.
    """
    sae_run(adata, sae_key, need=(), activations=True)
    if groupby == technical:
        msg = "groupby and technical are the same column; pass the cell types as groupby and the batch as technical."
        raise ValueError(msg)
    if not 0 < test_size < 1:
        msg = f"test_size must be in (0, 1), got {test_size!r}."
        raise ValueError(msg)
    check_key_added(key_added, reserved={"features": "the SAE run's features table", "params": "the run's params"})
    bio, _ = obs_codes(adata, groupby)
    tech, tech_names = obs_codes(adata, technical)
    act = sae_activations(adata, sae_key)
    live = np.flatnonzero(np.diff(act.tocsc().indptr) > 0)
    chosen = (
        _top_technical(act, tech, len(tech_names), int(n_features))
        if features is None
        else resolve_features(features, act.shape[1])
    )
    if chosen.size == 0 or 2 * chosen.size > live.size:
        msg = (
            f"Ablate between 1 and {live.size // 2} features (half of the {live.size} live ones, so that as many "
            f"other features can be drawn at random), got {chosen.size}."
        )
        raise ValueError(msg)
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    labelled = (bio >= 0) & (tech >= 0)
    test = held_out_split(adata, None, test_size, rng)[labelled]
    x, bio, tech = act[labelled], bio[labelled], tech[labelled]
    probes = {"technical": _probe(x, tech, test, seed), "groupby": _probe(x, bio, test, seed)}
    codes = {"technical": tech, "groupby": bio}
    draws = [("none", np.array([], dtype=np.int64)), ("chosen", chosen)]
    pool = np.setdiff1d(live, chosen)
    draws += [(f"random_{i}", rng.choice(pool, chosen.size, replace=False)) for i in range(int(n_random))]
    rows = [
        {"ablation": name, "n_ablated": int(cols.size),
         **{f"{p}_accuracy": _accuracy(probes[p], x, codes[p], test, cols) for p in probes}}
        for name, cols in draws
    ]  # fmt: skip
    results = pd.DataFrame(rows)
    results.index = results.index.astype(str)
    drop = results.iloc[0, 2:] - results.iloc[1:, 2:].astype(float)
    rand = drop.iloc[1:]
    pvalue = (1 + int((rand["technical_accuracy"] >= drop.iloc[0]["technical_accuracy"]).sum())) / (1 + len(rand))
    logger.info("spurious_removal: technical accuracy %.3f -> %.3f (random: %.3f), %s %.3f -> %.3f",
                results.iloc[0, 2], results.iloc[1, 2], results.iloc[0, 2] - rand["technical_accuracy"].mean(),
                groupby, results.iloc[0, 3], results.iloc[1, 3])  # fmt: skip
    adata = writable(adata, copy=copy)
    store_result(
        adata, "spurious", key=key_added, parent=sae_key, tables={"results": results},
        params={
            "groupby": groupby, "technical": technical, "features": chosen,
            "technical_drop": float(drop.iloc[0]["technical_accuracy"]),
            "groupby_drop": float(drop.iloc[0]["groupby_accuracy"]),
            "random_technical_drop": float(rand["technical_accuracy"].mean()) if len(rand) else np.nan,
            "random_groupby_drop": float(rand["groupby_accuracy"].mean()) if len(rand) else np.nan,
            "pvalue": float(pvalue), "n_random": int(n_random), "test_size": float(test_size), "random_state": seed,
        },
    )  # fmt: skip
    return adata if copy else None

"""Steering results: normal vs perturbed embeddings on their PCA (paper fig. 2B), per-feature changes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._readers import features_table, steering_info
from .._utils import resolve_seed
from ._utils import finish, new_or_given_ax


def steering_coords(adata: AnnData, steer_key: str = "steer") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA (2 components) of the stacked embeddings: coords, normal rows, perturbed rows, extra points.

    Extra points: the target centroid of :func:`sclens.tl.steer_towards` (0 x 2 when absent).
    """
    info = steering_info(adata, steer_key)
    emb = np.asarray(adata.obsm[info["params"]["use_rep"]], dtype=np.float64)
    extra = np.asarray(info.get("target_centroid", np.zeros((0, emb.shape[1]))), dtype=np.float64).reshape(
        -1, emb.shape[1]
    )
    cond = adata.obs["condition"].astype(str).to_numpy()
    normal, perturbed = np.flatnonzero(cond == "normal"), np.flatnonzero(cond == "perturbed")
    if emb.shape[1] > 2:
        mean = emb.mean(axis=0)
        _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        proj = (vt[:2] * signs[:2, None]).T
        return (emb - mean) @ proj, normal, perturbed, (extra - mean) @ proj
    return emb, normal, perturbed, extra


DOSE_LABELS = {
    "distance_ratio": "mean distance to the target centroid\n(relative to unsteered)",
    "displacement": "mean distance moved in the embedding",
}


def _versus_chance(params: Mapping, metric: str, fmt: str) -> str:
    """``"<metric> (random <median>, p = <p>)"`` of a steering result's params; no random part without draws."""
    text = format(float(params[metric]), fmt)
    if int(params.get("n_random", 0)) > 0:
        text += (
            f" (random {format(float(params[f'{metric}_random']), fmt)}, p = {float(params[f'{metric}_pvalue']):.2g})"
        )
    return text


def _title(info: dict, kind: str) -> str:
    table, params = info["features"], info["params"]
    feats, modes = table.index.to_numpy(), table["mode"].astype(str).to_numpy()
    if kind == "dose":
        n = int(params.get("n_random", 0))
        return f"dose-response: chosen features vs {n} random sets" if n else "dose-response"
    if "source" in params and kind == "embedding":
        src, tgt = (str(params[k]).split("=", 1)[-1] for k in ("source", "target"))
        return f"{src} \u2192 {tgt}\ndistance ratio {_versus_chance(params, 'distance_ratio', '.2f')}"
    if feats.size > 1:
        return f"{feats.size} features steered ({', '.join(sorted(set(modes.astype(str))))})"
    if str(modes[0]) == "knockout":
        return f"feature {feats[0]} knocked out"
    verb = "raised by" if str(modes[0]) == "add" else "steered to"
    return f"feature {feats[0]} {verb} {float(table['amount'].iloc[0]):.3g}"


def _embedding(ax: Axes, adata: AnnData, info: dict, steer_key: str, *, max_pairs, palette, size, seed) -> None:
    from matplotlib.collections import LineCollection

    coords, normal, perturbed, extra = steering_coords(adata, steer_key)
    rng = np.random.default_rng(seed)
    pairs = np.arange(normal.size)
    if pairs.size > max_pairs:
        pairs = np.sort(rng.choice(pairs, size=max_pairs, replace=False))
    segments = np.stack([coords[normal[pairs]], coords[perturbed[pairs]]], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.5, zorder=1))
    ax.scatter(*coords[normal].T, s=size, c=palette[0], label="normal", linewidths=0, zorder=2)
    ax.scatter(*coords[perturbed].T, s=size, c=palette[1], label="perturbed", linewidths=0, zorder=3)
    if extra.shape[0]:
        ax.scatter(*extra.T, s=12 * size, c="tab:red", marker="*", label="target centroid", zorder=4)
    ax.margins(0.08)  # no marker cut by the frame
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)


def _feature_labels(labels: AnnData | Mapping[int, str] | None, sae_key: str) -> Mapping[int, str]:
    """``{feature: label}`` from the steered run's AnnData (its features table) or as given."""
    if labels is None:
        return {}
    if isinstance(labels, AnnData):
        table = features_table(labels, sae_key)
        if not isinstance(table, pd.DataFrame) or "label" not in table:
            msg = (
                f"labels: `adata.uns[{sae_key!r}]['features']` has no 'label' column; "
                "run `sl.tl.annotate_features` on the AnnData that was steered, or pass {feature: label}."
            )
            raise KeyError(msg)
        return {int(k): str(v) for k, v in table["label"].dropna().items() if str(v) and str(k).isdigit()}
    return {int(k): str(v) for k, v in labels.items()}


def _bar_label(feature: int, mode: str, label: str, width: int = 36) -> str:
    if not label:
        return f"feature {feature} ({mode})"
    short = label if len(label) <= width else label[: width - 3] + "..."
    return f"{short}\n(feature {feature}, {mode})"


def _features(ax: Axes, info: dict, *, max_features: int, palette, names: Mapping[int, str]) -> None:
    table = info["features"]
    feats, modes = table.index.to_numpy(), table["mode"].astype(str).to_numpy()
    change = table["mean_change"].to_numpy(dtype=float)
    order = np.argsort(-np.abs(change), kind="stable")[:max_features][::-1]
    labels = [_bar_label(int(feats[i]), modes[i], names.get(int(feats[i]), "")) for i in order]
    ax.barh(np.arange(order.size), change[order], color=[palette[1] if c >= 0 else palette[0] for c in change[order]])
    ax.set_yticks(np.arange(order.size), labels, fontsize=8)
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel("mean activation change of the steered cells")


def _dose(ax: Axes, info: dict, *, palette) -> None:
    table = info["dose_response"]
    s = table["strength"].to_numpy(dtype=float)
    if np.isfinite(table["random_median"].to_numpy(dtype=float)).any():
        ax.fill_between(
            s, table["random_q05"], table["random_q95"], color="0.85", linewidth=0, label="random sets (5-95%)"
        )
        ax.plot(s, table["random_median"], color="0.45", linestyle="--", label="random sets (median)")
    ax.plot(s, table["chosen"], color=palette[1], marker="o", label="chosen features")
    ax.axvline(1.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("steering strength (1 = the steering asked for)")
    metric = str(info["params"].get("dose_metric", ""))
    ax.set_ylabel(DOSE_LABELS.get(metric, metric))
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))


@doc_params()
def steering(
    adata: AnnData,
    *,
    steer_key: str = "steer",
    kind: Literal["embedding", "features", "dose"] = "embedding",
    max_pairs: int = 200,
    max_features: int = 30,
    palette: Sequence[str] = ("black", "tab:blue"),
    labels: AnnData | Mapping[int, str] | None = None,
    size: float = 12.0,
    random_state: int = 0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Before / after embeddings of a steering experiment, the change of each steered feature, or its dose-response.

    Parameters
    ----------
    adata
        Output of :func:`sclens.tl.steer` or :func:`sclens.tl.steer_towards` (two rows per steered cell).
    steer_key
        The ``key_added`` the steering result was written under.
    kind
        ``"embedding"``: PCA of the normal (before) and perturbed (after) embeddings with a line
        joining each cell's pair, and the target centroid of :func:`~sclens.tl.steer_towards`;
        ``"features"``: the mean activation change of each steered feature (bars); ``"dose"``:
        the effect against steering strength (``uns[steer_key]['dose_response']``: distance
        ratio to the target for :func:`~sclens.tl.steer_towards`, distance moved for
        :func:`~sclens.tl.steer`) for the chosen features and, as a median line and a 5-95% band,
        for the random sets of the chance baseline.
    max_pairs
        At most this many cell pairs are joined by lines (a random subset); all points are drawn.
    max_features
        With ``kind="features"``: at most this many features, the largest changes.
    palette
        Colours of the normal and perturbed points (bars: decreases and increases; dose: the second
        colour draws the chosen features).
    labels
        With ``kind="features"``: biological labels of the bars, from the AnnData that was steered
        (the ``label`` column of its ``uns[sae_key]['features']``, written by
        :func:`sclens.tl.annotate_features`) or as ``{{feature: label}}``; ``None``: feature numbers only.
    size
        Marker size.
    {random_state}
    {plot}
    save
        Path to save the figure to (any format matplotlib knows).

    Returns
    -------
    The figure when ``return_fig`` is ``True``, else ``None``.
    """
    info = steering_info(adata, steer_key)
    if kind not in ("embedding", "features", "dose"):
        msg = f"kind must be 'embedding', 'features' or 'dose', got {kind!r}."
        raise ValueError(msg)
    for name, value in (("max_pairs", max_pairs), ("max_features", max_features)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f"{name} must be a positive integer, got {value!r}."
            raise ValueError(msg)
    if len(palette) < 2:
        msg = f"palette needs two colours (normal, perturbed), got {palette!r}."
        raise ValueError(msg)
    n_feat = len(info["features"])
    names = _feature_labels(labels, str(info["params"].get("sae_key", "sae")))
    size_fig = {"embedding": (5.2, 4), "dose": (6.4, 4)}.get(
        kind, (5.5, 1.2 + (0.45 if names else 0.25) * min(n_feat, max_features))
    )
    fig, ax_ = new_or_given_ax(ax, figsize=size_fig, layout="constrained")
    if kind == "embedding":
        _embedding(
            ax_,
            adata,
            info,
            steer_key,
            max_pairs=max_pairs,
            palette=palette,
            size=size,
            seed=resolve_seed(random_state),
        )
    elif kind == "dose":
        _dose(ax_, info, palette=palette)
    else:
        _features(ax_, info, max_features=max_features, palette=palette, names=names)
    ax_.set_title(_title(info, kind))
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

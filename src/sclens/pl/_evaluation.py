"""The scorecard of :func:`sclens.tl.evaluate`: probing, seed stability, absorption and batch removal."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import doc_params
from .._readers import features_table, result
from ._utils import finish, panels

# each baseline its own marker and line style; equal curves (the PCA of a PCA embedding is the embedding)
# are also shifted apart along k, by this share of an octave per baseline, so that none hides another
_BASELINE_STYLES = (("s", "--"), ("^", "-."), ("D", ":"), ("v", (0, (6, 2))), ("P", (0, (2, 1))))
_DODGE = 0.08


def _probing(ax: Axes, result: Mapping) -> None:
    curves = {str(m): sub.sort_values("k") for m, sub in result["summary"].groupby("method", sort=False)}
    baselines = [m for m in curves if m != "sae"]
    for method, sub in curves.items():
        k, acc = sub["k"].to_numpy(dtype=float), sub["balanced_accuracy"].to_numpy(dtype=float)
        if method == "sae":
            ax.plot(k, acc, marker="o", label=method, lw=2.5, color="black", zorder=3)
            continue
        i = baselines.index(method)
        marker, ls = _BASELINE_STYLES[i % len(_BASELINE_STYLES)]
        same = [b for b in baselines[:i] if _same_curve(curves[b], sub)]
        label = f"{method} = {same[0]}" if same else method
        shift = 2.0 ** (_DODGE * (i - (len(baselines) - 1) / 2))
        ax.plot(k * shift, acc, marker=marker, ls=ls, lw=1.2, mfc="none", label=label)
    ax.set_xscale("log", base=2)
    ks = sorted(result["summary"]["k"].unique())
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.set_ylim(0.45, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    split = result["params"].get("split_by")
    ax.set(xlabel="features per probe (k)", ylabel="held-out balanced accuracy",
           title=f"sparse probing ({'held-out ' + str(split) if split else 'held-out cells'})")  # fmt: skip
    ax.legend(frameon=False, fontsize=8)


def _same_curve(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two methods' probing curves have the same ``k`` and the same accuracies."""
    return a["k"].tolist() == b["k"].tolist() and np.allclose(a["balanced_accuracy"], b["balanced_accuracy"])


def _stability(ax: Axes, result: Mapping, features: pd.DataFrame) -> None:
    values = features["stability"].dropna().to_numpy(dtype=float)
    thr = float(result["params"]["threshold"])
    ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0")
    ax.axvline(thr, color="black", ls="--", lw=1)
    share = float(result["params"]["share_reproduced"])
    ax.set(xlabel="stability (|cos| of the match in a refit)", ylabel="live features",
           title=f"seed stability: {100 * share:.0f}% reproduced")  # fmt: skip


def _absorption(ax: Axes, result: Mapping) -> None:
    res = result["results"]
    labels = [f"{c}: {f}" for c, f in zip(res["coarse"], res["fine"], strict=True)]
    y = np.arange(len(res))
    ax.barh(y, res["silent_fraction"], color="#dddddd", label="coarse feature silent")
    ax.barh(y, res["absorption_fraction"], color="#c44e52", label="... and a subtype feature fires")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set(xlabel="share of the subtype's cells", title="absorption along the label hierarchy")
    ax.legend(frameon=False, fontsize=8)


def _spurious(ax: Axes, result: Mapping) -> None:
    res = result["results"].set_index("ablation")
    p = result["params"]
    random = res[res.index.str.startswith("random_")]
    cols = ["technical_accuracy", "groupby_accuracy"]
    bars = {"none": res.loc["none", cols], "chosen": res.loc["chosen", cols], "random (mean)": random[cols].mean()}
    x = np.arange(2)
    for i, (name, values) in enumerate(bars.items()):
        ax.bar(x + (i - 1) * 0.27, values.to_numpy(dtype=float), width=0.27, label=name)
    ax.set_xticks(x, [str(p["technical"]), str(p["groupby"])])
    ax.set_ylim(0, 1.02)
    ax.set(ylabel="held-out balanced accuracy", title="removing the technical features")
    ax.legend(frameon=False, fontsize=8, title="ablated", title_fontsize=8)


_PANELS = {"probing": _probing, "stability": _stability, "absorption": _absorption, "spurious": _spurious}


@doc_params()
def evaluation(
    adata: AnnData,
    *,
    sae_key: str = "sae",
    evaluation_key: str = "evaluation",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Draw the scorecard of :func:`sclens.tl.evaluate`, one panel per measurement it holds.

    Panels: sparse probing (held-out balanced accuracy against ``k`` for the SAE, thick, and each
    baseline with its own marker and line style, shifted a little along ``k`` so that equal curves
    stay visible; a baseline equal to an earlier one is labelled so, e.g. ``pca = embedding`` when the
    embedding is itself a PCA; chance 0.5 dotted), seed stability (histogram of the features' ``stability``,
    the threshold dashed), absorption (per subtype, the share of cells where the coarse feature is
    silent, and where a subtype feature fires instead) and spurious-correlation removal (the two
    probes' accuracies with nothing, the technical features and random features ablated). Panels
    whose tool did not run are left out.

    Parameters
    ----------
    {adata}
    {sae_key}
    evaluation_key
        Name of the scorecard in ``adata.uns[sae_key]`` (the ``key_added`` of :func:`sclens.tl.evaluate`).
    {plot}

    Returns
    -------
    The figure when ``return_fig=True``, else ``None``.
    """
    card = result(adata, "evaluation", key=evaluation_key, parent=sae_key)
    keys = dict(card["params"].get("results", {}))
    found = {n: result(adata, n, key=str(keys[n]), parent=sae_key, missing_ok=True) for n in _PANELS if n in keys}
    draw = [n for n in _PANELS if found.get(n) is not None]
    if not draw:
        msg = (
            f"`adata.uns[{sae_key!r}][{evaluation_key!r}]` names no probing, stability, absorption or spurious result "
            f"that is still stored; rerun `sl.tl.evaluate(adata, groupby=..., sae_key={sae_key!r})`."
        )
        raise KeyError(msg)
    fig, axes = panels(len(draw), ax, ncols=len(draw), panel_size=(4.2, 3.4))
    for name, panel in zip(draw, axes, strict=True):
        if name == "stability":
            _stability(panel, found[name], features_table(adata, sae_key, required=True))
        else:
            _PANELS[name](panel, found[name])
    return finish(fig, ax=ax, show=show, save=save, return_fig=return_fig)

"""Plots of the feature-biology tools: plotted data checked numerically, images against baselines.

Regenerate the baseline PNGs in ``tests/pl/baseline/`` after an intended change with
``SCLENS_REGENERATE_BASELINES=1 python -m pytest tests/pl/test_biology_plots.py``.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from biology_fixtures import add_go, categories_for, toy_with_sae
from matplotlib.testing.compare import compare_images

from sclens.pl._activation import feature_activation
from sclens.pl._feature_umap import feature_umap
from sclens.pl._specificity import specificity
from sclens.pl._steering import steering
from sclens.tl._feature_space import feature_space
from sclens.tl._specificity import feature_specificity
from sclens.tl._steering._steer import steer

BASELINE = Path(__file__).parent / "baseline"
REGENERATE = os.environ.get("SCLENS_REGENERATE_BASELINES") == "1"
TOL = 12  # RMS difference, 0-255 scale: tolerates font hinting, catches a changed plot


def check_image(fig, name, tmp_path):
    fig.savefig(tmp_path / name, dpi=40)
    plt.close(fig)
    if REGENERATE:
        BASELINE.mkdir(exist_ok=True)
        (BASELINE / name).write_bytes((tmp_path / name).read_bytes())
        pytest.skip(f"regenerated {name}")
    result = compare_images(str(BASELINE / name), str(tmp_path / name), tol=TOL)
    assert result is None, result


@pytest.fixture(autouse=True)
def _style():
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams["font.family"] = "DejaVu Sans"
        yield
    plt.close("all")


@pytest.fixture(scope="module")
def toy():
    adata = toy_with_sae(n_cells=300)
    feature_specificity(adata, groupby="cell_type")
    return adata


def test_feature_activation(toy, tmp_path):
    fig = feature_activation(toy, features=[0, 9], basis="emb", return_fig=True)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["feature 0", "feature 9"]
    coll = axes[1].collections[0]
    a = toy.obsm["X_sae"][:, 9].toarray().ravel()
    order = np.argsort(a, kind="stable")
    np.testing.assert_allclose(coll.get_array(), a[order])
    np.testing.assert_allclose(coll.get_offsets(), toy.obsm["X_emb"][order, :2], rtol=1e-6)
    sizes = coll.get_sizes()
    assert sizes[-1] == pytest.approx(30.0)
    assert sizes[0] == pytest.approx(2.0)
    check_image(fig, "feature_activation.png", tmp_path)


def test_specificity_heatmap(toy, tmp_path):
    fig = specificity(toy, return_fig=True)
    ax = fig.axes[0]
    values = ax.images[0].get_array()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    # local features first, ordered by group (two per group), then by effect within the group
    assert [set(labels[i : i + 2]) for i in range(0, 8, 2)] == [{str(i), str(i + 1)} for i in range(0, 8, 2)]
    effect = toy.uns["sae"]["features"]["effect"]
    assert all(effect[labels[i]] >= effect[labels[i + 1]] for i in range(0, 8, 2))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["type_0", "type_1", "type_2", "type_3"]
    # each local feature peaks (scaled to 1) in its own group: a block diagonal
    local_block = np.asarray(values)[:, :8]
    np.testing.assert_array_equal(np.argmax(local_block, axis=0), np.repeat(np.arange(4), 2))
    assert local_block.max(axis=0) == pytest.approx(np.ones(8))
    assert values.shape == (4, 16)  # dead features left out
    check_image(fig, "specificity.png", tmp_path)


def test_steering_pca(toy, tmp_path):
    out = steer(toy, features=2, cells={"cell_type": "type_0"})
    fig = steering(out, return_fig=True)
    ax = fig.axes[0]
    normal, pert = ax.collections[1].get_offsets(), ax.collections[2].get_offsets()
    assert normal.shape == pert.shape == (out.n_obs // 2, 2)
    segs = ax.collections[0].get_segments()
    assert len(segs) == out.n_obs // 2
    np.testing.assert_allclose(segs[0], np.vstack([normal[0], pert[0]]))
    # all cells move along one direction (the feature's decoder row): parallel arrows
    d = np.asarray(pert) - np.asarray(normal)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(d @ d[0]), 1.0, atol=1e-5)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["normal", "perturbed"]
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the data, not over it
    points = np.vstack([normal, pert])
    lo, hi = np.array(ax.get_xlim()), np.array(ax.get_ylim())
    span = np.array([lo[1] - lo[0], hi[1] - hi[0]])
    assert (points.min(0) - np.array([lo[0], hi[0]]) > 0.05 * span).all()  # a margin at the frame
    assert (np.array([lo[1], hi[1]]) - points.max(0) > 0.05 * span).all()
    check_image(fig, "steering.png", tmp_path)


def test_steering_several_features_and_target(toy):
    from sclens.tl._steering._steer_towards import steer_towards

    out = steer(
        toy, features=[2, 3, 0], cells={"cell_type": "type_0"}, mode=["set", "add", "knockout"], value=[3.0, 1.0, 0]
    )
    fig = steering(out, kind="features", return_fig=True)
    ax = fig.axes[0]
    widths = sorted(p.get_width() for p in ax.patches)
    np.testing.assert_allclose(widths, sorted(out.uns["steer"]["features"]["mean_change"]), rtol=1e-6)
    assert ax.get_title() == "3 features steered (add, knockout, set)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "feature 0 (knockout)",
        "feature 3 (add)",
        "feature 2 (set)",
    ]
    plt.close(fig)
    from anndata import AnnData

    table = toy.uns["sae"]["features"].assign(label="")
    table.loc["2", "label"] = "B cell receptor signaling pathway | CD79A, MS4A1"
    source = AnnData(uns={"sae": {"features": table}})
    fig = steering(out, kind="features", labels=source, return_fig=True)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[-1] == "B cell receptor signaling pathway...\n(feature 2, set)"  # the label, shortened
    assert ticks[0] == "feature 0 (knockout)"  # no label stored
    fig = steering(out, kind="features", labels={3: "interferon response"}, return_fig=True)
    assert fig.axes[0].get_yticklabels()[1].get_text() == "interferon response\n(feature 3, add)"
    plt.close("all")
    with pytest.raises(KeyError, match="has no 'label' column; run `sl.tl.annotate_features`"):
        steering(out, kind="features", labels=toy)
    towards = steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, n_random=0)
    _, (ax1, ax2) = plt.subplots(1, 2)
    assert steering(towards, steer_key="steer_towards", ax=ax1) is None
    star = ax1.collections[-1].get_offsets()
    assert star.shape == (1, 2)
    ratio = towards.uns["steer_towards"]["params"]["distance_ratio"]
    assert ax1.get_title() == f"type_0 \u2192 type_1\ndistance ratio {ratio:.2f}"
    # the target centroid lies among the perturbed cells (they moved onto it)
    pert = np.asarray(ax1.collections[2].get_offsets())
    assert np.linalg.norm(pert.mean(0) - star[0]) < 0.2 * np.linalg.norm(
        np.asarray(ax1.collections[1].get_offsets()).mean(0) - star[0]
    )
    # the flat record of earlier versions (frac_closer, no chance baseline): refused with the call to re-run
    old = towards.copy()
    rec = old.uns["steer_towards"]
    old.uns["steer_towards"] = {
        "features": rec["features"].index.to_numpy(), "objective": rec["objective"], **rec["params"], "frac_closer": 1.0,
    }  # fmt: skip
    rerun = r"Re-run `sl\.tl\.steer_towards\(adata, source=\.\.\., target=\.\.\., key_added='steer_towards'\)`"
    with pytest.raises(ValueError, match=rerun):
        steering(old, steer_key="steer_towards", ax=ax2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colors'"):  # never released: no shim
        steering(out, colors=("red", "blue"), ax=ax2)
    with pytest.raises(ValueError, match="kind must be 'embedding', 'features' or 'dose'"):
        steering(out, kind="pca", ax=ax2)
    with pytest.raises(KeyError, match="uns\\['steer'\\]"):
        steering(towards)
    plt.close("all")


def test_steering_dose_response(toy, tmp_path):
    from sclens.tl._steering._steer_towards import steer_towards

    towards = steer_towards(toy, source={"cell_type": "type_0"}, target={"cell_type": "type_1"}, max_features=4)
    dose, params = towards.uns["steer_towards"]["dose_response"], towards.uns["steer_towards"]["params"]
    # the embedding's title: the distance ratio next to the random sets' median and the p-value
    ax = steering(towards, steer_key="steer_towards", return_fig=True).axes[0]
    assert ax.get_title() == "type_0 \u2192 type_1\ndistance ratio {:.2f} (random {:.2f}, p = {:.2g})".format(
        params["distance_ratio"], params["distance_ratio_random"], params["distance_ratio_pvalue"]
    )
    assert ax.get_title().endswith("distance ratio 0.65 (random 0.86, p = 0.02)")
    plt.close("all")
    fig = steering(towards, steer_key="steer_towards", kind="dose", return_fig=True)
    ax = fig.axes[0]
    band, (median, chosen) = ax.collections[0], ax.lines[:2]
    np.testing.assert_allclose(chosen.get_xydata(), dose[["strength", "chosen"]].to_numpy())
    np.testing.assert_allclose(median.get_xydata(), dose[["strength", "random_median"]].to_numpy())
    lo, hi = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert lo == pytest.approx(dose["random_q05"].min())
    assert hi == pytest.approx(dose["random_q95"].max())
    assert ax.get_title() == "dose-response: chosen features vs 50 random sets"
    assert ax.get_ylabel().startswith("mean distance to the target centroid")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "random sets (5-95%)", "random sets (median)", "chosen features",
    ]  # fmt: skip
    check_image(fig, "steering_dose.png", tmp_path)
    # steer: distance moved; without random sets only the chosen curve
    out = steer(toy, features=2, cells={"cell_type": "type_0"}, n_random=0)
    fig = steering(out, kind="dose", return_fig=True)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["chosen features"]
    assert len(fig.axes[0].collections) == 0
    assert fig.axes[0].get_ylabel() == "mean distance moved in the embedding"
    assert fig.axes[0].get_title() == "dose-response"
    plt.close(fig)
    old = out.copy()  # the record without the chance baseline (written before it): refused, naming the table
    del old.uns["steer"]["dose_response"]
    with pytest.raises(ValueError, match=r"without the table\(s\) \['dose_response'\].*Re-run `sl\.tl\.steer\("):
        steering(old, kind="dose")


@pytest.fixture(scope="module")
def space(toy):
    """Feature space with a stub UMAP (fixed coordinates), so no numba compilation is needed here."""
    adata = add_go(toy.copy())

    class StubUMAP:
        def __init__(self, **kwargs):
            self.random_state = kwargs["random_state"]

        def fit_transform(self, x):
            return np.random.default_rng(self.random_state).normal(size=(x.shape[0], 2))

    saved = sys.modules.get("umap")
    sys.modules["umap"] = types.SimpleNamespace(UMAP=StubUMAP)
    try:
        feature_space(adata, categories=categories_for(adata.uns["sae_go"]["results"]))
    finally:
        if saved is None:
            del sys.modules["umap"]
        else:
            sys.modules["umap"] = saved
    return adata


def test_feature_umap_categories(space, tmp_path):
    fig = feature_umap(space, return_fig=True)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["cellular process", "metabolic process"]
    assert ax.get_title() == "first-level GO category (2)"
    assert [len(c.get_offsets()) for c in ax.collections] == [8, 8]
    check_image(fig, "feature_umap.png", tmp_path)


def test_feature_umap_concept(space, tmp_path):
    fig, ax = plt.subplots(figsize=(3, 3))
    assert feature_umap(space, concept="Interferon", ax=ax, show=False) is None
    light, dark = ax.collections
    coords = space.uns["sae_go"]["feature_space"]["umap"]
    glob = space.uns["toy"]["program_kind"] == "global"  # only global features carry the interferon term
    np.testing.assert_allclose(dark.get_offsets(), coords[glob])
    np.testing.assert_allclose(light.get_offsets(), coords[~glob])
    assert ax.get_title() == "Interferon (8 features)"
    check_image(fig, "feature_umap_concept.png", tmp_path)


def test_plot_errors(toy, space):
    with pytest.raises(KeyError, match=r"Basis 'umap' not found"):
        feature_activation(toy, features=0)
    with pytest.raises(ValueError, match="feature 40 is out of range"):
        feature_activation(toy, features=[40], basis="emb")
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="`ax` holds one panel but 2 features"):
        feature_activation(toy, features=[0, 1], basis="emb", ax=ax)
    with pytest.raises(KeyError, match="run `sl.tl.feature_specificity"):
        specificity(toy_with_sae(n_cells=50))
    with pytest.raises(KeyError, match=r"not the output of `sl\.tl\.steer`"):
        steering(toy)
    with pytest.raises(
        KeyError, match=r"run `sl.tl.feature_space\(adata, annotation_key='sae_go', key_added='feature_space'\)` first"
    ):
        feature_umap(toy)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import sclens as sl


@pytest.fixture(scope="module")
def fitted():
    adata = sl.datasets.toy(n_cells=200, n_genes=200, random_state=2)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=3, n_epochs=3, lr=1e-2)
    return adata


def test_training_plot_draws_stored_curves(fitted):
    m = fitted.uns["sae"]["metrics"]
    fig = sl.pl.training(fitted, return_fig=True)
    axes = fig.axes
    assert len(axes) == 4
    for a, name in zip(axes, ["loss", "fvu", "l0", "dead_fraction"], strict=True):
        x, y = axes[axes.index(a)].lines[0].get_data()
        np.testing.assert_array_equal(x, [1, 2, 3])
        np.testing.assert_allclose(y, m[f"train_{name}"])
    np.testing.assert_allclose(axes[1].lines[1].get_ydata(), m["val_fvu"])
    plt.close(fig)


def test_training_plot_into_given_ax(fitted):
    fig, ax = plt.subplots()
    assert sl.pl.training(fitted, metrics=["l0"], ax=ax, show=False) is None
    np.testing.assert_allclose(ax.lines[0].get_ydata(), fitted.uns["sae"]["metrics"]["train_l0"])
    with pytest.raises(ValueError, match="one axes per metric"):
        sl.pl.training(fitted, ax=ax, show=False)
    with pytest.raises(ValueError, match="metrics must name at least one of"):
        sl.pl.training(fitted, metrics=["accuracy"], ax=ax, show=False)
    plt.close(fig)


def test_training_plot_shows_steps_stop_reason_and_best():
    adata = sl.datasets.toy(n_cells=200, n_genes=200, random_state=2)
    rule = {"min_steps": 20, "max_steps": 40, "eval_every": 10}
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=3, trainer_kwargs=rule)
    m = adata.uns["sae"]["metrics"]
    fig = sl.pl.training(adata, metrics=["fvu"], return_fig=True)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [10, 20, 30, 40])
    assert ax.get_xlabel() == "optimizer step"
    assert ax.lines[2].get_xdata()[0] == m["best_step"]  # the restored step is marked
    title = fig._suptitle.get_text()
    assert title.startswith("40 steps, max_steps; best held-out FVU") and f"{m['best_val_fvu']:.3g}" in title
    plt.close(fig)

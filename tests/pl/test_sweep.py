"""``sl.pl.sweep``: one colour per setting, family filter, save / ax / return_fig."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import sclens as sl


@pytest.fixture
def table():
    k = np.repeat([4, 8, 16], 4)
    return pd.DataFrame(
        {
            "k": k,
            "lr": np.tile([1e-4, 1e-3], 6),
            "family": np.tile(["X''", "X''", "X", "X"], 3),
            "l0": k + 0.5,
            "mean_best_r": np.linspace(0.5, 0.95, 12),
        }
    )


def test_sweep_points_per_setting(table, tmp_path):
    fig = sl.pl.sweep(table, hue="k", save=tmp_path / "sweep.png", return_fig=True)
    ax = fig.axes[0]
    assert (tmp_path / "sweep.png").stat().st_size > 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["k=4", "k=8", "k=16"]
    sel = table[table["family"] == "X''"]
    for coll, k in zip(ax.collections, (4, 8, 16), strict=True):  # only the X'' rows, per k
        np.testing.assert_allclose(coll.get_offsets(), sel.loc[sel["k"] == k, ["l0", "mean_best_r"]].to_numpy())
    assert ax.get_ylabel() == "mean_best_r (X'')"
    plt.close(fig)


def test_sweep_into_given_ax_without_family(table):
    fig, ax = plt.subplots()
    assert sl.pl.sweep(table, family=None, ax=ax) is None
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == len(table)
    assert plt.fignum_exists(fig.number)  # drawn into the user's ax: not shown, not closed
    plt.close(fig)


def test_sweep_errors(table):
    with pytest.raises(TypeError, match=r"must be the DataFrame returned by sl\.sim\.sweep"):
        sl.pl.sweep(table.to_dict())
    with pytest.raises(ValueError, match=r"family 'Z' not in the table; available: \['X', \"X''\"\]"):
        sl.pl.sweep(table, family="Z")
    with pytest.raises(KeyError, match=r"Columns \['fvu'\] not in the table"):
        sl.pl.sweep(table, y="fvu")

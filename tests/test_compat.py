"""Renamed parameters keep working for one release: a FutureWarning and the same result as the new name."""

from __future__ import annotations

import pandas as pd
import pytest
from biology_fixtures import toy_with_sae

import sclens as sl


def test_old_name_warns_and_gives_the_new_names_result():
    adata = toy_with_sae(n_cells=300)
    adata.uns["run2"], adata.obsm["X_run2"] = adata.uns.pop("sae"), adata.obsm.pop("X_sae")
    new = sl.tl.feature_specificity(adata, groupby="cell_type", sae_key="run2", copy=True)
    with pytest.warns(FutureWarning, match=r"feature_specificity\(\): `key` was renamed to `sae_key`"):
        old = sl.tl.feature_specificity(adata, groupby="cell_type", key="run2", copy=True)
    pd.testing.assert_frame_equal(old.uns["run2"]["features"], new.uns["run2"]["features"])
    pd.testing.assert_frame_equal(
        old.uns["run2"]["specificity"]["group_means"], new.uns["run2"]["specificity"]["group_means"]
    )
    with pytest.raises(TypeError, match="got both `key` \\(renamed\\) and `sae_key`; pass only `sae_key`"):
        sl.tl.feature_specificity(adata, groupby="cell_type", key="run2", sae_key="run2")


def test_warnings_point_at_the_callers_line():
    """A renamed-parameter wrapper adds a frame; warnings inside still name the user's line."""
    from anndata import ImplicitModificationWarning

    adata = toy_with_sae(n_cells=300)
    view = adata[:200]
    with pytest.warns(ImplicitModificationWarning) as record:
        sl.tl.feature_specificity(view, groupby="cell_type")
    assert record[0].filename == __file__

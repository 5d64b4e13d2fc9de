"""Warnings raised inside the public functions point at the user's line."""

from __future__ import annotations

import pytest
from biology_fixtures import toy_with_sae

import sclens as sl


def test_warnings_point_at_the_callers_line():
    from anndata import ImplicitModificationWarning

    adata = toy_with_sae(n_cells=300)
    view = adata[:200]
    with pytest.warns(ImplicitModificationWarning) as record:
        sl.tl.feature_specificity(view, groupby="cell_type")
    assert record[0].filename == __file__

"""pl._utils.feature_title: long readable labels are wrapped, short ones kept, missing ones omitted."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from sclens.pl._utils import feature_title


def _adata(label: str) -> ad.AnnData:
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    adata.uns["sae"] = {"features": pd.DataFrame({"label": [label, ""]}, index=["0", "1"])}
    return adata


def test_long_label_wrapped_to_lines():
    label = "regulation of mast cell degranulation | FCGR3A, CFD, IFITM3, LST1, AIF1 | CD14+ Monocyte"
    title = feature_title(_adata(label), "sae", 0, width=30, max_lines=3)
    lines = title.split("\n")
    assert 1 < len(lines) <= 3
    assert all(len(line) <= 30 for line in lines)
    assert lines[0].startswith("feature 0: regulation")
    assert title.endswith("...")  # did not fit in three lines


def test_short_and_missing_labels():
    assert feature_title(_adata("B cell activation"), "sae", 0) == "feature 0: B cell activation"
    assert feature_title(_adata("B cell activation"), "sae", 1) == "feature 1"

"""A small version of ``benchmarks/biology.py``: real immune cells annotated at the defaults.

The full benchmark (scVI 60+ epochs, both nulls, counts and predicted expression) writes
``benchmarks/results/biology_*.md``; here scVI trains a few epochs and only the cells null runs, so the
checks are those that hold whatever the embedding: the marker-called cell types, the GO vocabulary by
ancestry, every live feature tested at the defaults on 559 cells, and the null target.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sclens as sl

pytest.importorskip("scvi")
PATH = Path(__file__).parents[1] / "benchmarks" / "biology.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("biology_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cell_types_and_vocabulary(bench):
    adata = sl.datasets.immune559_counts()
    counts = bench.call_cell_types(adata).value_counts().to_dict()
    assert counts == {"macrophage": 177, "monocyte": 129, "T": 76, "unassigned": 68, "NK": 61, "B": 48}
    vocab = bench.expected_terms()
    assert {"GO:0042113", "GO:0050853", "GO:0030183"} <= vocab["B"]  # B cell differentiation descends
    assert "GO:0042098" in vocab["T"]  # T cell proliferation
    assert "GO:0042116" in vocab["macrophage"]  # macrophage activation
    assert "GO:0042116" in vocab["monocyte"]
    assert not vocab["NK"] & vocab["B"]


def test_cell_types_of_pbmc4000(bench):
    """The second dataset (``--dataset pbmc4000``): the four PBMC types, no macrophages, each in the hundreds."""
    adata = sl.datasets.pbmc4000_counts()
    _, _, types = bench.DATASETS["pbmc4000"]
    adata.obs["cell_type"] = bench.call_cell_types(adata, types)
    counts = adata.obs["cell_type"].value_counts().to_dict()
    assert counts == {"T": 1553, "monocyte": 937, "B": 598, "NK": 472, "unassigned": 440}
    assert bench.cell_types(adata) == ["B", "T", "NK", "monocyte"]


def test_small_run_annotates_at_defaults_and_meets_null_target(bench):
    out, adata = bench.run(n_epochs=5, n_permutations=1, nulls=("cells",), cache=None, variants=("counts",))
    table, line, _ = out["counts"]
    assert table["cell type"].tolist() == list(bench.MARKERS)
    feats = adata.uns["sae"]["features"]
    live = feats["kind"] != "dead"
    # defaults on 559 cells: a high set of min_high=50 cells (all active cells when fewer); only a feature
    # active in fewer than 2 cells is skipped (before: every feature, as 1 % of 559 cells is under 10)
    reasons = feats.loc[live, "skip_reason"]
    n_active = pd.Series(np.asarray((adata.obsm["X_sae"] > 0).sum(0)).ravel(), index=feats.index)
    np.testing.assert_array_equal(reasons != "", n_active[live] < 2)
    assert (reasons == "").mean() > 0.8
    tested = live & (feats["skip_reason"] == "")
    assert (feats.loc[tested, "n_high"] >= np.minimum(50, n_active[tested])).all()
    assert (feats["n_terms"] > 0).sum() > 0
    params = adata.uns["sae"]["annotation_null_counts"]["params"]
    assert float(params["null_cells_annotated"]) <= 0.05 * int(params["n_features"]), line
    assert np.isfinite(adata.uns["sae"]["annotation_null_counts"]["table"]["annotation_fdr"]).any()

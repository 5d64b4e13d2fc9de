"""A small version of ``benchmarks/evaluate.py``: the architecture table's row on a tiny simulation.

The full benchmark (every architecture, real immune cells and the tutorial-scale simulation) writes
``benchmarks/results/evaluate_{immune559,sim}.*``; here a 600-cell simulation, an SAE trained for a few
epochs and the PCA baseline check that every column is filled and that the ground-truth scores read
the right run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the script imports _results from its own folder
    try:
        spec = importlib.util.spec_from_file_location("evaluate_benchmark", BENCH / "evaluate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass looks its module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    yield module
    sys.modules.pop("evaluate_benchmark", None)


@pytest.mark.slow  # about 2 minutes on a loaded 2-core machine
def test_small_simulation_rows(bench):
    data = bench.simulation(n_cells=600, n_genes=200, ae_epochs=3, n_epochs=5)
    data.adata.obsm["X_pca"] = data.adata.obsm["X_ae"]  # scanpy's PCA: the baseline must not replace it
    assert data.adata.obs["top_program"].nunique() > 5
    rows = bench.run(data, ["topk:8", "pca"], n_seeds=1, n_permutations=1)
    sae, pca = rows
    assert (sae["method"], sae["k"], pca["k"]) == ("topk:8", 8, "-")
    assert sae["n_features"] == data.adata.n_obs // 3  # fit_sae's default width: min(16 x 20 dims, cells / 3)
    assert sae["l0"] == pytest.approx(8, abs=0.01)
    assert pca["fvu"] == pytest.approx(0, abs=1e-4)
    assert pca["n_features"] == 40
    for row in rows:
        assert 0 <= row["x2_best_r"] <= 1
        assert 0 <= row["m_recall"] <= 1
        assert 0 < row["probe_k4"] <= 1
        assert 0 <= row["annotated"] <= 1
        assert row["null_corrected"] == pytest.approx(row["annotated"] - row["null"])
    assert np.isfinite(sae["stability"])
    assert np.isnan(pca["stability"])
    assert np.isnan(sae["absorption"])  # the simulation has no label hierarchy
    # the runs are removed after scoring: the next setting starts from the same AnnData
    assert not {k for k in data.adata.uns if k.startswith(("topk", "pca"))}
    # stored rows are kept and their settings skipped (a resumed run)
    assert bench.run(data, ["topk:8", "pca"], n_seeds=1, n_permutations=1, rows=rows) == rows

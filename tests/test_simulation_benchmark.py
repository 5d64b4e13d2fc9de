"""A small version of ``benchmarks/simulation.py --sweep``: SAE width x k on the autoencoder's embedding.

The full sweep (20,000 cells, 100 programs) writes ``benchmarks/results/simulation_sweep.*``; here 1,500
cells, 10 programs and SAEs trained for two epochs check that every pair is stored with its linear
ceiling, and that k = 1 recovers X'' worse than the ceiling allows.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow  # about a minute and a half on a loaded 2-core machine
def test_small_sweep_is_stored_with_the_ceiling(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))  # the script imports _results from its own folder
    try:
        spec = importlib.util.spec_from_file_location("simulation_benchmark", BENCH / "simulation.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        rows = bench.main(["--n-cells", "1500", "--n-genes", "200", "--n-programs", "10", "--n-cell-types", "5",
                           "--n-latent", "8", "--ae-epochs", "2", "--sae-epochs", "2", "--sweep",
                           "--sweep-width", "20", "--sweep-k", "1", "4", "20", "--results", str(tmp_path)])  # fmt: skip
    finally:
        sys.path.remove(str(BENCH))
    out = capsys.readouterr().out
    ceiling = float(out.split("(sqrt of held-out R^2) = ")[1].split()[0])
    assert list(zip(rows["n_features"], rows["k"], strict=True)) == [(20, 1), (20, 4)]  # k < width only
    assert rows["ceiling_r"].round(3).eq(ceiling).all()
    assert 0.5 < ceiling <= 1
    assert (rows["mean_best_r"] <= ceiling + 0.05).all()  # no feature beats a linear map by much
    assert rows["mean_best_r"].iloc[0] < ceiling - 0.1  # one feature per cell cannot stand for 10 programs
    assert rows["l0"].tolist() == pytest.approx([1, 4], abs=0.01)
    stored = json.loads((tmp_path / "simulation_sweep.json").read_text())
    assert [r["mean_best_r"] for r in stored["rows"]] == rows["mean_best_r"].tolist()
    assert stored["params"]["sweep_k"] == [1, 4, 20]
    assert "| 20 | 4 |" in (tmp_path / "simulation_sweep.md").read_text()


def test_resume_keeps_the_stored_pairs_of_the_same_data(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("simulation_benchmark", BENCH / "simulation.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        args = bench._parse_args(["--sweep", "--sweep-width", "20", "--sweep-k", "1", "4", "--results", str(tmp_path)])
        stored = [{"n_features": 20, "k": k, "mean_best_r": r} for k, r in ((1, 0.3), (4, 0.6))]
        bench.save("simulation_sweep", stored, dataset="toy", params=vars(args), directory=tmp_path)
        resumed = bench._parse_args([*["--sweep", "--resume", "--sweep-width", "20", "--sweep-k", "4", "1"],
                                     "--threads", "1", "--results", str(tmp_path)])  # fmt: skip
        # every pair is stored: nothing is trained (there is no data to train on) and the rows come back
        rows = bench.sweep(None, resumed, ceiling=0.9)
        assert rows["mean_best_r"].tolist() == [0.3, 0.6]
        other = bench._parse_args(["--sweep", "--resume", "--n-cells", "500", "--results", str(tmp_path)])
        with pytest.raises(SystemExit, match="measured with other n_cells; rerun without it"):
            bench.sweep(None, other, ceiling=0.9)
    finally:
        sys.path.remove(str(BENCH))

"""``benchmarks/_results.py``: every stored benchmark table says which commit, date, machine and data it came from."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("_results", ROOT / "benchmarks" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_save_records_provenance_and_round_trips(tmp_path, capsys):
    results = _module()
    rows = [{"engine": "fast", "s_per_feature": 0.0123456}, {"engine": "deseq2", "s_per_feature": 2.5}]
    path = results.save("demo", rows, dataset="toy 400 cells", params={"n": 3}, directory=tmp_path)
    back = results.load("demo", directory=tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert back["commit"].removesuffix("+dirty") == (head.stdout.strip() or "unknown")
    assert back["rows"] == rows
    assert (back["benchmark"], back["dataset"], back["params"]) == ("demo", "toy 400 cells", {"n": 3})
    assert back["date"].endswith("+00:00")
    assert back["machine"]["cores"] >= 1
    table = "| engine | s_per_feature |\n|---|---|\n| fast | 0.01235 |\n| deseq2 | 2.5 |"
    assert table in (tmp_path / "demo.md").read_text()
    assert table in capsys.readouterr().out
    assert path == tmp_path / "demo.json"

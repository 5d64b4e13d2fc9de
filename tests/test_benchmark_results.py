"""``benchmarks/_results.py``: every stored benchmark table says which commit, date, machine and data it came from."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


# ---------------------------------------------------------------------------------------------------------
# numbers quoted in the docs, checked against the stored results (convention: benchmarks/README.md)

DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
INLINE = re.compile(r"<!-- result: (\w+) ([\w.\[\]]+) -->")
TABLE = re.compile(r"<!-- result-table: (\w+) ((?:[\w\-]+ ?)+) -->")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _value(record: dict, path: str):
    """``record`` at ``path`` (``rows[0].null_rate``: keys and list indices)."""
    value = record
    for key, index in re.findall(r"(\w+)|\[(\d+)\]", path):
        value = _field(value, key) if key else value[int(index)]
    return value


def _field(mapping: dict, name: str):
    """``mapping[name]``; ``_`` in ``name`` stands for a space of the stored key (``annotate_CPU_s``)."""
    return mapping[name] if name in mapping else mapping[name.replace("_", " ")]


def _agrees(shown: str, value, *, percent: bool) -> bool:
    """``shown`` (a number as printed: commas, decimals, a following % for a fraction) is ``value`` rounded."""
    number = NUMBER.search(shown)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or number is None:
        return shown.strip().strip("`") == str(value)
    text = number.group().replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    expected = value * 100 if percent else value
    return abs(float(text) - expected) <= 0.5 * 10**-decimals + 1e-9


def check_quotes(text: str, load) -> list[str]:
    """Every marked number of ``text`` that disagrees with its stored result, as ``'line N: ...'``."""
    errors = []
    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        for m in INLINE.finditer(line):
            before = line[: m.start()].rstrip()
            percent = before.endswith("%")
            shown = NUMBER.findall(before.rstrip("% "))
            value = _value(load(m.group(1)), m.group(2))
            if not shown or not _agrees(shown[-1] + ("%" if percent else ""), value, percent=percent):
                errors.append(f"line {i}: {(shown or ['no number'])[-1]} quoted, {m.group(1)} {m.group(2)} = {value}")
        table = TABLE.search(line)
        if table is None:
            continue
        record, columns = load(table.group(1)), table.group(2).split()
        rest = lines[i:]
        start = next((k for k, r in enumerate(rest) if r.strip()), len(rest))  # the table under the marker
        stop = next((k for k, r in enumerate(rest[start:], start) if not r.startswith("|")), len(rest))
        body = rest[start + 2 : stop]  # its rows, after the header and the rule
        if len(body) != len(record["rows"]):
            errors.append(f"line {i}: the table has {len(body)} rows, {table.group(1)} has {len(record['rows'])}")
        for j, (row, stored) in enumerate(zip(body, record["rows"], strict=False)):
            cells = [c.strip() for c in row.strip("|").split("|")]
            for cell, column in zip(cells, columns, strict=True):
                if column != "-" and not _agrees(cell, _field(stored, column), percent=cell.endswith("%")):
                    errors.append(f"line {i}: row {j} {column}: {cell} shown, {_field(stored, column)} stored")
    return errors


def _load(name: str) -> dict:
    return _module().load(name)


def test_docs_quote_stored_results():
    """Every number marked in README / docs / CHANGELOG is its benchmark's stored value, as rounded there."""
    errors = {p.name: check_quotes(p.read_text(), _load) for p in DOCS}
    assert {k: v for k, v in errors.items() if v} == {}


def test_docs_citing_a_stored_result_mark_its_numbers():
    """A page naming a ``benchmarks/results/<name>`` that has a JSON marks at least one number from it."""
    stored = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    unmarked = []
    for path in DOCS:
        text = path.read_text()
        marked = {m.group(1) for m in INLINE.finditer(text)} | {m.group(1) for m in TABLE.finditer(text)}
        cited = set(re.findall(r"benchmarks/results/(\w+)\.(?:md|json)", text)) & stored
        unmarked += [f"{path.name}: {name}" for name in sorted(cited - marked)]
    assert unmarked == []


def test_quote_check_fails_on_wrong_numbers():
    """The check catches a wrong inline number, a wrong table cell, a wrong label, wrong rounding and a missing row."""
    record = {"rows": [{"method": "fast", "rate": 0.008333, "n": 2009424, "s": 29.64}, {"method": "slow", "rate": 0.5,
                                                                                        "n": 7, "s": 1.0}]}  # fmt: skip
    load = {"demo": record}.__getitem__
    good = (
        "null 0.8 %<!-- result: demo rows[0].rate --> of 2,009,424<!-- result: demo rows[0].n --> terms\n"
        "<!-- result-table: demo method rate - s -->\n\n| method | rate | n | s |\n|---|---|---|---|\n"
        "| fast | 0.83% | anything | 29.6 |\n| `slow` | 50 % | | 1 |\n"
    )
    assert check_quotes(good, load) == []
    wrong = {
        "0.8 %<!--": "0.9 %<!--",  # a wrong inline percentage
        "2,009,424<!--": "2,009,425<!--",  # an off-by-one count
        "| 29.6 |": "| 29.7 |",  # a wrong table cell
        "| fast |": "| slow |",  # a wrong label
        "0.83%": "0.84%",  # rounded the wrong way
    }
    for old, new in wrong.items():
        assert check_quotes(good.replace(old, new), load), f"{old} -> {new} passed"
    assert "the table has 1 rows" in check_quotes(good.replace("| `slow` | 50 % | | 1 |\n", ""), load)[0]


# ---------------------------------------------------------------------------------------------------------
# benchmarks/gpu.py stores its table without a GPU (--device cpu), never over the GPU's own results


def _gpu(tmp_path, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    tiny = ["--device", "cpu", "--cells", "600", "--dims", "8", "--features", "32", "--k", "4", "--batch-size", "200"]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *tiny, "--results-dir", str(tmp_path), *args]
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_cpu_check.json", "gpu_cpu_check.md"]
    return _module().load("gpu_cpu_check", directory=tmp_path)


def test_gpu_benchmark_stores_on_cpu(tmp_path):
    """``--budget 0``: every row is stored as skipped, with the configuration; no GPU table is written."""
    record = _gpu(tmp_path, "--budget", "0")
    steps = [(r["step"], r["topk_select"], r["precision"]) for r in record["rows"]]
    assert steps == [(s, t, p) for p in ("32-true", "bf16-mixed") for s, t in
                     [("plain", "full"), ("static", "full"), ("static", "blocked")]]  # fmt: skip
    assert {r["status"] for r in record["rows"]} == {"skipped (budget of 0 s spent)"}
    assert record["params"]["cells"] == 600
    assert record["dataset"].startswith("fit_sae.make_data: 600 cells x 8 dims")


@pytest.mark.slow
def test_gpu_benchmark_measures_on_cpu(tmp_path):
    """A tiny CPU run: every row timed, throughput = cells / seconds, the plain step its own baseline."""
    rows = _gpu(tmp_path)["rows"]
    assert len(rows) == 7
    assert rows[-1]["step"] == "plain PyTorch loop (no trainer)"
    for row in rows:
        assert row["status"] == "ok"
        assert row["s_per_epoch"] > 0
        assert row["m_cells_per_s"] == pytest.approx(600 / row["s_per_epoch"] / 1e6)
    assert [r["x_plain_step"] for r in rows if r["step"] == "plain"] == [1.0, 1.0]

"""``benchmarks/_results.py``: every stored benchmark table says which commit, date, machine and data it came from."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sclens as sl

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
TABLE = re.compile(r"<!-- result-table: (\w+) ([\w\- ]+) -->")  # one class: no nested quantifier to backtrack
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
# a passage quoting a benchmark's measurement marks it (a stored result) or dates it (a historical run)

CITES = re.compile(r"benchmarks/(?:results/)?\w+\.(?:py|md|json)")
HISTORICAL = re.compile(r"<!-- historical: (\d{4}-\d{2}-\d{2}) ([0-9a-f]{7,40}) -->")
MARKED = re.compile(r"<!-- (?:result|result-table|historical): ")
#: what reads as a measurement: a decimal, a percentage, "N of M", a quantity with a unit of time, size or speed
MEASURED = re.compile(
    r"(?<![\w.])(?:\d+\.\d+|\d[\d,]*(?:\.\d+)? ?%|\d[\d,]* of \d[\d,]*"
    r"|\d[\d,]*(?:\.\d+)? ?(?:s|ms|min|minutes|MB|GB|GiB|MiB|x)\b)"
)
#: not a measurement: code, file names, dates, commits, thresholds (`< 0.05`), versions, issue numbers
NOT_MEASURED = [r"`[^`]*`", r"<!--.*?-->", r"\([^)]*\.(?:md|py|json|png|html)\)", r"\d{4}-\d{2}-\d{2}",
                r"\b[0-9a-f]{7,40}\b", r"(?:[<>=]=?|torch|Python|issue)\s*-?\d[\d,.]*"]  # fmt: skip


def passages(text: str) -> list[tuple[int, str]]:
    """Paragraphs and list items of markdown ``text`` (first line number, text), each with the tables under it."""
    found: list[tuple[int, list[str]]] = []
    gap = True
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            gap = True
            continue
        table = line.startswith(("|", "<!-- result-table"))
        if found and not re.match(r"\s?[-*] |#|```", line) and (table or not gap):
            found[-1][1].append(line)  # the same paragraph, or a table (and its marker) under it
        else:
            found.append((i, [line]))
        gap = False
    return [(i, "\n".join(block)) for i, block in found]


def measured(passage: str) -> list[str]:
    """The numbers of ``passage`` that read as measurements."""
    for pattern in NOT_MEASURED:
        passage = re.sub(pattern, "", passage)
    return MEASURED.findall(passage)


def check_passages(text: str, name: str, *, dated: bool, commit_date=None, stored=None) -> list[str]:
    """Passages citing a benchmark with a measured number, no result / historical marker and no checked table by them.

    Also a passage quoting a measurement from ``benchmarks/results/<name>`` that has no JSON in ``stored`` (a table
    kept before results were stored) without a historical marker, and the historical markers that do not check out.

    ``<!-- historical: DATE COMMIT -->`` declares a run that is not stored: ``COMMIT`` must be a commit of
    ``DATE`` (``commit_date(commit)``, ``None`` when unknown) and, on a ``dated`` page (README, docs), the
    visible text of the passage says ``DATE``.
    """
    errors = []
    found = passages(text)
    tables = [False, *("<!-- result-table:" in p for _, p in found), False]
    dated_runs = [False, *(bool(HISTORICAL.search(p)) for _, p in found), False]
    for k, (line, passage) in enumerate(found, 1):
        numbers = measured(passage) if CITES.search(passage) else []
        if numbers and not MARKED.search(passage) and not (tables[k - 1] or tables[k + 1]):  # next to a checked table
            errors.append(f"{name}:{line}: quotes {numbers[0]} from {CITES.search(passage).group()} without a marker")
        unstored = sorted(set(re.findall(r"benchmarks/results/(\w+)\.(?:md|json)", passage)) - set(stored or ()))
        if stored is not None and unstored and numbers and not any(dated_runs[k - 1 : k + 2]):
            errors.append(f"{name}:{line}: cites benchmarks/results/{unstored[0]}, which is not stored as JSON")
        for date, commit in HISTORICAL.findall(passage):
            if dated and date not in HISTORICAL.sub("", passage):
                errors.append(f"{name}:{line}: historical {date} {commit}: the text does not say {date}")
            known = commit_date(commit) if commit_date else None
            if known is not None and known != date:
                errors.append(f"{name}:{line}: historical {date} {commit}: the commit is of {known or 'no date'}")
    return errors


def _commit_date(commit: str) -> str | None:
    """The author date of ``commit`` (``""`` when the history lacks it; ``None`` in a shallow clone)."""
    git = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, check=False)
    if git(["git", "rev-parse", "--is-shallow-repository"]).stdout.strip() != "false":
        return None
    return git(["git", "show", "-s", "--format=%as", f"{commit}^{{commit}}"]).stdout.strip()


def test_quoted_measurements_are_marked_or_dated():
    """A passage citing a benchmark that quotes a measurement marks it against a stored result or dates the run.

    CHANGELOG entries record changes as they were made: a dated marker suffices there; in README and docs
    the text also says when the number was measured.
    """
    stored = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    errors = []
    for path in DOCS:
        dated = path.name != "CHANGELOG.md"
        errors += check_passages(path.read_text(), path.name, dated=dated, commit_date=_commit_date, stored=stored)
    assert errors == []


def test_passage_check_fails_on_unmarked_and_misdated_numbers():
    """The check catches an unmarked measurement, an undated historical one and a marker naming the wrong commit."""
    dates = {"abc1234": "2026-11-28"}.get
    marked = "Fit in 12.5 s<!-- result: fit rows[0].s --> (`benchmarks/fit.py`).\n\nAn aside.\n\n"
    marked += "- Entry: 3 of 4 (`benchmarks/fit.py`).\n"  # a list item, apart from the marked passage
    assert check_passages(marked, "x.md", dated=True, commit_date=dates) == [
        "x.md:5: quotes 3 of 4 from benchmarks/fit.py without a marker"
    ]
    table = "Measured by `benchmarks/gpu.py`:\n\n| s |\n|---|\n| 1.07 |\n"
    assert check_passages(table, "x.md", dated=True) == ["x.md:1: quotes 1.07 from benchmarks/gpu.py without a marker"]
    dated = table.replace("`:", "` on 2026-11-28:\n<!-- historical: 2026-11-28 abc1234 -->")
    assert check_passages(dated, "x.md", dated=True, commit_date=dates) == []
    assert "does not say 2026-11-28" in check_passages(dated.replace(" on 2026-11-28", ""), "x.md", dated=True)[0]
    assert check_passages(dated.replace(" on 2026-11-28", ""), "CHANGELOG.md", dated=False) == []
    assert "the commit is of no date" in check_passages(dated.replace("abc1234", "def5678"), "x.md", dated=True,
                                                        commit_date=lambda c: "")[0]  # fmt: skip
    assert check_passages("Run `benchmarks/fit.py` with 2,000 cells, p < 0.05, torch 2.11.\n", "x.md", dated=True) == []
    unstored = "Table: `benchmarks/results/old.md`, 5 of 6 rows.<!-- result: new rows[0].n -->\n"
    assert "old, which is not stored as JSON" in check_passages(unstored, "x.md", dated=True, stored={"new"})[0]
    assert check_passages(unstored, "x.md", dated=True, stored={"old"}) == []


# ---------------------------------------------------------------------------------------------------------
# benchmarks/reliability.py: the counts it stores come from hypothesis's statistics and pytest's outcomes

STATISTICS = """
tests/test_properties.py::test_public_call[tl.steer]:

  - during reuse phase (0.10 seconds):
    - 2 passing, 0 failing, and 0 invalid test cases
  - during generate phase (21.54 seconds):
    - 64 passing, 1 failing, and 3 invalid test cases
    - Found 1 distinct error in this phase
  - during shrink phase (17.16 seconds):
    - 12 passing, 4 failing, and 4 invalid test cases
  - during explain phase (104.22 seconds):
    - 1 passing, 89 failing, and 0 invalid test cases

tests/test_properties.py::test_fit_sae_and_encode:

  - during generate phase (90.1 seconds):
    - 40 passing, 0 failing, and 0 invalid test cases

PASSED tests/test_properties.py::test_fit_sae_and_encode
FAILED tests/test_properties.py::test_public_call[tl.steer] - AssertionError: steer changed its input
"""


def test_reliability_counts(monkeypatch):
    """Examples of the drawing phases only, shrinking re-runs apart, distinct errors; every public function mapped."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import reliability

    stats = reliability.statistics(STATISTICS)
    assert stats == {
        "tests/test_properties.py::test_public_call[tl.steer]": {"examples": 67, "shrinks": 106, "errors": 1},
        "tests/test_properties.py::test_fit_sae_and_encode": {"examples": 40, "shrinks": 0, "errors": 0},
    }
    assert reliability.outcomes(STATISTICS) == {
        "tests/test_properties.py::test_fit_sae_and_encode": "PASSED",
        "tests/test_properties.py::test_public_call[tl.steer]": "FAILED",
    }
    rows = {r["function"]: r for r in reliability.function_rows({"long": stats})}
    public = {f"{m}.{name}" for m in ("tl", "pl", "get") for name in getattr(sl, m).__all__}
    assert set(rows) == public
    assert (rows["tl.steer"]["long_examples"], rows["tl.steer"]["long_errors"]) == (67, 1)
    assert (rows["tl.fit_sae"]["long_examples"], rows["tl.encode"]["long_examples"]) == (40, 40)
    assert rows["tl.evaluate"]["test"] == "test_expensive_public_call[tl.evaluate]"
    assert rows["pl.atlas"]["long_examples"] == 0


def test_estimator_summary_is_its_inputs(monkeypatch):
    """``benchmarks/estimators.py`` only gathers stored results: its stored table is what those give today."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import estimators

    stored = _module().load("dispersion_estimators")["rows"]
    assert estimators.rows() == stored
    default = stored[0]
    assert default["estimator"].endswith("(default)")
    assert default["null_annotated"] == 0
    assert estimators.count("7/16 (44%)") == "7/16"


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

"""Every tutorial notebook runs top to bottom (offline, seeded) and is stored with current outputs.

The notebooks are committed executed (``scripts/execute_tutorials.py``), so the docs show their
figures. A notebook whose code changed since it was executed (``metadata.sclens.code_hash``), whose
stored cells lack a figure or table that a fresh run produces, or whose printed numbers (stdout and
the text of results and tables: FVU, feature and term counts, DE tables, scores) are not those of a
fresh run, fails here. Times (a number followed by ``s``) and stderr (warnings, progress) are not compared.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
REGENERATE = "python scripts/execute_tutorials.py"
#: a decimal number standing alone (not part of a name, a hex address or a size like 640x480), not seconds
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])(?!\s*s\b)")
#: printed numbers agree to this relative difference (seeded runs reproduce; BLAS may round the last digit)
REL = 1e-3


def _script():
    spec = importlib.util.spec_from_file_location("execute_tutorials", ROOT / "scripts" / "execute_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rich(cell) -> set[str]:
    """MIME types of a code cell's displayed results (figures, tables, reprs), streams left out."""
    return {m for o in cell.get("outputs", []) if o.output_type in ("display_data", "execute_result") for m in o.data}


def _printed(cell) -> str:
    """What a code cell printed to stdout and the text form of its results, in order."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream" and o.name == "stdout":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            parts.append(o.data.get("text/plain", ""))
    return "\n".join(parts)


def _same_number(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return math.isclose(x, y, rel_tol=REL, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))


def check_numbers(old, new, name: str, i: int) -> None:
    """Raise AssertionError when code cell ``i`` printed other numbers than a fresh run prints."""
    was, now = NUMBER.findall(_printed(old)), NUMBER.findall(_printed(new))
    differ = [(a, b) for a, b in zip(was, now, strict=False) if not _same_number(a, b)]
    where = f"{name}: code cell {i} printed {len(was)} number(s)"
    assert len(was) == len(now), f"{where} where a fresh run prints {len(now)}; run `{REGENERATE}`"
    assert not differ, f"{where}; first difference: stored {differ[0][0]}, fresh {differ[0][1]}; run `{REGENERATE}`"


def check_stored(stored, fresh, name: str) -> None:
    """Raise AssertionError when ``stored`` is not the executed form of the current code."""
    script = _script()
    recorded = stored.metadata.get("sclens", {}).get("code_hash")
    assert recorded is not None, f"{name} is stored without outputs; run `{REGENERATE} tutorials/{name}`"
    assert recorded == script.code_hash(stored), (
        f"{name}: code changed since it was executed; run `{REGENERATE} tutorials/{name}`"
    )
    for i, (old, new) in enumerate(zip(stored.cells, fresh.cells, strict=True)):
        if old.cell_type != "code":
            continue
        assert old.execution_count is not None, f"{name}: code cell {i} was not executed; run `{REGENERATE}`"
        missing = _rich(new) - _rich(old)
        assert not missing, (
            f"{name}: code cell {i} lacks outputs {sorted(missing)} that a fresh run gives; run `{REGENERATE}`"
        )
        check_numbers(old, new, name, i)


SLOW = {"steering"}  # trains scVI and two SAEs: over the default run's time budget
PARAMS = [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in TUTORIALS]


@pytest.mark.parametrize("path", PARAMS)
def test_tutorial_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend stores the figures
    stored = nbformat.read(path, as_version=4)
    fresh = _script().execute(copy.deepcopy(stored))
    check_stored(stored, fresh, path.name)


def test_staleness_check_fails():
    """The check catches edited code, a notebook stored without outputs, a missing figure and other numbers."""
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    script = _script()
    png = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    printed = new_output("stream", name="stdout", text="FVU 0.177, 117 features annotated (fit in 12.5 s)\n")
    fresh = new_notebook(
        cells=[
            new_code_cell("x = 1", execution_count=1, outputs=[printed]),
            new_code_cell("plot()", execution_count=2, outputs=[png]),
        ]
    )
    stored = copy.deepcopy(fresh)
    stored.metadata["sclens"] = {"code_hash": script.code_hash(stored)}
    check_stored(stored, fresh, "ok.ipynb")
    edited = copy.deepcopy(stored)
    edited.cells[0].source = "x = 2"
    with pytest.raises(AssertionError, match="code changed since it was executed"):
        check_stored(edited, fresh, "edited.ipynb")
    blank = copy.deepcopy(fresh)
    for cell in blank.cells:
        cell.outputs, cell.execution_count = [], None
    with pytest.raises(AssertionError, match="stored without outputs"):
        check_stored(blank, fresh, "blank.ipynb")
    blank.metadata["sclens"] = {"code_hash": script.code_hash(blank)}
    with pytest.raises(AssertionError, match="was not executed"):
        check_stored(blank, fresh, "blank.ipynb")
    no_figure = copy.deepcopy(stored)
    no_figure.cells[1].outputs = []
    with pytest.raises(AssertionError, match=r"code cell 1 lacks outputs \['image/png', 'text/plain'\]"):
        check_stored(no_figure, fresh, "no_figure.ipynb")
    slower = copy.deepcopy(stored)  # times are not compared
    slower.cells[0].outputs[0].text = "FVU 0.177, 117 features annotated (fit in 40.1 s)\n"
    check_stored(slower, fresh, "slower.ipynb")
    for text, diff in [("FVU 0.181, 117", "stored 0.181, fresh 0.177"), ("FVU 0.177, 116", "stored 116, fresh 117")]:
        other = copy.deepcopy(stored)
        other.cells[0].outputs[0].text = f"{text} features annotated (fit in 12.5 s)\n"
        with pytest.raises(AssertionError, match=rf"code cell 0 printed 2 number\(s\).*first difference: {diff}"):
            check_stored(other, fresh, "other.ipynb")
    fewer = copy.deepcopy(stored)
    fewer.cells[0].outputs[0].text = "FVU 0.177\n"
    with pytest.raises(AssertionError, match=r"code cell 0 printed 1 number\(s\) where a fresh run prints 2"):
        check_stored(fewer, fresh, "fewer.ipynb")
    assert nbformat.validate(stored) is None

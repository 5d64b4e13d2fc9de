"""Every tutorial notebook runs top to bottom (offline, seeded) and is stored with current outputs.

The notebooks are committed executed (``scripts/execute_tutorials.py``), so the docs show their
figures. A notebook whose code changed since it was executed (``metadata.sclens.code_hash``), or
whose stored cells lack a figure or table that a fresh run produces, fails here.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
REGENERATE = "python scripts/execute_tutorials.py"


def _script():
    spec = importlib.util.spec_from_file_location("execute_tutorials", ROOT / "scripts" / "execute_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rich(cell) -> set[str]:
    """MIME types of a code cell's displayed results (figures, tables, reprs), streams left out."""
    return {m for o in cell.get("outputs", []) if o.output_type in ("display_data", "execute_result") for m in o.data}


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
    """The check catches edited code, a notebook stored without outputs and a missing figure."""
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    script = _script()
    png = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    fresh = new_notebook(
        cells=[new_code_cell("x = 1", execution_count=1), new_code_cell("plot()", execution_count=2, outputs=[png])]
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
    assert nbformat.validate(stored) is None

"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

README = Path(__file__).parents[1] / "README.md"


def test_readme_quick_start_runs(monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setattr("matplotlib.pyplot.show", lambda *a, **k: None)
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    features = namespace["features"]
    assert (features["kind"] == "local").any()
    assert (features["n_terms"] > 0).sum() >= 10


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    setup = re.search(r"## Set up\n\n```bash\n(.*?)```", text, flags=re.S).group(1).strip().splitlines()
    test = re.search(r"## Test\n\n```bash\n(.*?)```", text, flags=re.S).group(1).strip()
    assert setup[1] in ci
    assert test in ci

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


def test_readme_run_command_is_the_demo():
    """The one command after set-up is ``sclens demo`` (run for real by tests/test_cli.py::test_demo)."""
    from sclens._cli import build_parser

    text = README.read_text()
    run = re.search(r"## Run\n\n```bash\n(.*?)```", text, flags=re.S).group(1).strip()
    assert run == "sclens demo -o demo/"
    args = build_parser().parse_args(run.split()[1:])
    assert (args.command, args.output) == ("demo", "demo/")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line for b in blocks for line in b.splitlines() if line.startswith("sclens ")]
    assert len(commands) >= 5
    for line in commands:
        build_parser().parse_args(line.split()[1:])  # every command shown parses

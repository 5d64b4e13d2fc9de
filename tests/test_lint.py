"""The source tree passes the project's ruff configuration (pyproject.toml) and is formatted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff is not installed (pip install 'sclens[test]')"
)


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_check_src_is_clean():
    out = _ruff("check", "--no-cache", "--output-format", "concise", "src")
    assert out.returncode == 0, f"ruff check src found problems:\n{out.stdout}{out.stderr}"


def test_ruff_format_src_is_clean():
    out = _ruff("format", "--no-cache", "--check", "src")
    assert out.returncode == 0, f"ruff format --check src would reformat:\n{out.stdout}{out.stderr}"


def test_ruff_config_has_the_agreed_rules():
    """The rules of issue 15 stay selected (a removed rule would pass the checks above silently)."""
    import tomllib

    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert {"EM", "D", "FBT", "C901", "PLR0915", "TID251"} <= set(lint["select"])
    assert lint["pydocstyle"]["convention"] == "numpy"
    assert lint["flake8-tidy-imports"]["banned-api"]

"""The documentation lists every public function and builds without warnings."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sclens as sl

DOCS = Path(__file__).parents[1] / "docs"


def _public_names():
    for ns in [*sl.__all__]:
        mod = getattr(sl, ns)
        if inspect.ismodule(mod):
            for name in mod.__all__:
                yield f"{ns}.{name}"


def test_api_page_lists_every_public_function():
    api = (DOCS / "api.md").read_text()
    listed = set(re.findall(r"^\s{0,4}(\w+\.\w+)\s*$", api, flags=re.M))
    missing = sorted(set(_public_names()) - listed)
    assert not missing, f"docs/api.md lacks {missing}"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, symlinks=True, ignore=shutil.ignore_patterns("_build", "generated"))
    shutil.copy(DOCS.parent / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    if (DOCS.parent / "tutorials").exists():
        shutil.copytree(DOCS.parent / "tutorials", tmp_path / "tutorials")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(src), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-5000:]
    # every tutorial page shows the figures stored in its notebook (tutorials are stored executed)
    for nb in sorted((DOCS.parent / "tutorials").glob("*.ipynb")):
        n_figures = nb.read_text().count('"image/png"')
        page = (tmp_path / "html" / "notebooks" / f"{nb.stem}.html").read_text()
        assert n_figures > 0, f"{nb.name} is stored without figures; run `python scripts/execute_tutorials.py`"
        assert page.count("<img") >= n_figures, f"{nb.stem}.html shows {page.count('<img')} of {n_figures} figures"
    # offline: no page loads anything from another host (MathJax is served from _static/mathjax)
    remote = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", flags=re.I)
    pages = sorted((tmp_path / "html").rglob("*.html"))
    loading = [p.relative_to(tmp_path / "html").as_posix() for p in pages if remote.search(p.read_text())]
    assert loading == [], f"pages that load external URLs: {loading}"
    assert (tmp_path / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert 'src="_static/mathjax/tex-chtml.js"' in (tmp_path / "html" / "steering.html").read_text()

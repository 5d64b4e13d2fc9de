"""Sphinx configuration for sclens."""

from __future__ import annotations

from datetime import date
from importlib.metadata import version as _pkg_version

project = "sclens"
author = "sclens developers"
copyright = f"{date.today():%Y}, {author}"  # noqa: A001
release = _pkg_version("sclens")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static/mathjax: formulas render offline, no CDN
]
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
nb_execution_mode = "off"  # notebooks are stored executed (scripts/execute_tutorials.py); the tests re-run them
nb_output_stderr = "remove"  # library warnings and tips (lightning, tqdm) are not part of the tutorials' results
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
nitpicky = False
suppress_warnings = ["mystnb.unknown_mime_type"]
intersphinx_mapping = {}  # offline builds: no inventories are fetched

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_title = "sclens"

"""Dependencies point one way and subpackages share helpers only through top-level shared modules.

``pl``, ``get``, ``sim`` -> ``tl`` -> ``sae``, ``datasets`` -> top-level modules (``sclens._utils``,
``_docs``, ``_readers``, ``_stats``, ``_network``, ...). A subpackage never imports another one's private
modules (``sclens.tl._x``); what two subpackages share lives in a top-level module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "sclens"
# top-level modules = 0; a subpackage may import only subpackages of a lower rank (and itself)
RANK = {"": 0, "sae": 1, "datasets": 1, "tl": 2, "get": 3, "pl": 3, "sim": 3}
ALSO_ALLOWED = {("pl", "get")}  # a plot draws what an accessor reads


def _module_name(path: Path) -> str:
    parts = ["sclens", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(line, imported module, imported names) of every sclens import in the file, made absolute."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "sclens":  # `from .. import tl` imports the subpackage
                for a in node.names:
                    yield node.lineno, f"sclens.{a.name}", []
            elif target.split(".")[0] == "sclens":
                yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sclens":
                    yield node.lineno, alias.name, []


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else ""


FILES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_import_rules(path):
    src_mod = _module_name(path)
    src = _subpackage(src_mod)
    problems = []
    for line, target, names in _imports(path):
        tgt = _subpackage(target)
        # `from ..tl import _fit` imports a module too
        modules = [target] + [f"{target}.{n}" for n in names if n.startswith("_") and (SRC / "/".join(
            target.split(".")[1:]) / f"{n}.py").exists()]  # fmt: skip
        for mod in modules:
            private = any(p.startswith("_") for p in mod.split(".")[2:])
            if tgt and tgt != src and private:
                problems.append(f"line {line}: private module {mod} of another subpackage")
        if src_mod == "sclens":
            continue  # the package root imports its namespaces
        if tgt and tgt != src and RANK[tgt] >= RANK[src] and (src, tgt) not in ALSO_ALLOWED:
            problems.append(f"line {line}: {src or 'top-level'} must not import {tgt} ({target})")
    assert not problems, f"{path.relative_to(SRC)}:\n" + "\n".join(problems)


# Inside ``tl`` (issue 24): the annotation internals are the bottom layer; steering and trust tools build on
# them and on the tool modules at the ``tl`` root, never on each other.
TL_LAYERS = {"_annotation": set(), "_steering": {"_annotation", ""}, "_trust": {"_annotation", ""}}


def _tl_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["sclens", "tl"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in TL_LAYERS else ""


TL_FILES = sorted((SRC / "tl").rglob("*.py"))


@pytest.mark.parametrize("path", TL_FILES, ids=[str(p.relative_to(SRC)) for p in TL_FILES])
def test_tl_layers(path):
    src = _tl_layer(_module_name(path))
    if src == "" or path == SRC / "tl" / "__init__.py":
        return  # the tl root (its public face and the tool modules) may import every layer
    problems = []
    for line, target, names in _imports(path):
        modules = [target] + [f"{target}.{n}" for n in names]
        for tgt in {_tl_layer(m) for m in modules} - {None, src}:
            if tgt not in TL_LAYERS[src]:
                problems.append(f"line {line}: tl.{src} must not import tl.{tgt or '<root>'} ({target})")
    assert not problems, f"{path.relative_to(SRC)}:\n" + "\n".join(problems)


def test_tl_layers_catch_violations(monkeypatch):
    bad = SRC / "tl" / "_annotation" / "_zz_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from .._steering._steer import steer\n")
    with pytest.raises(AssertionError, match=r"tl\._annotation must not import tl\._steering"):
        test_tl_layers(bad)


def test_sae_core_has_no_anndata():
    for path in (SRC / "sae").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] in ("anndata", "mudata") for m in mods), f"{path.name} imports AnnData"


def test_the_rules_catch_violations(tmp_path, monkeypatch):
    """The checker itself flags a private cross-subpackage import and an upward import."""
    bad = SRC / "sae" / "_zz_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from ..tl._fit import fit_sae\n")
    with pytest.raises(AssertionError, match=r"private module sclens\.tl\._fit.*\n.*sae must not import tl"):
        test_import_rules(bad)


def test_import_is_lazy():
    """``import sclens`` loads no namespace; ``sl.tl`` / ``sl.get`` do not load torch until the SAE is used."""
    import subprocess
    import sys

    code = (
        "import sys, sclens as sl\n"
        "heavy = ('torch', 'matplotlib', 'anndata', 'scanpy', 'scvi', 'scipy.stats')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "sl.tl, sl.get\n"
        "print('torch' in sys.modules, 'sae' in dir(sl.get), 'fit_sae' in dir(sl.tl))\n"
        "from sclens.tl._fit import fit_sae\n"
        "print(sl.tl.fit_sae is fit_sae, 'torch' in sys.modules)\n"
        "try:\n    sl.nope\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "False True True", "True True", "module 'sclens' has no attribute 'nope'"]

"""Walk the public API and enforce the signature and docstring rules of STYLE.md."""

from __future__ import annotations

import inspect
import re
import typing

import pytest

import sclens as sl

NAMESPACES = ["tl", "pl", "get", "datasets"]
# functions whose first argument is not a single AnnData by design
NOT_ADATA_FIRST = {
    "datasets": "*",  # loaders and generators take no AnnData
    "tl.compare_features": "two AnnData objects",
    "pl.sweep": "a DataFrame from sl.sim.sweep",
}
# a second positional argument by design (the file written)
SECOND_POSITIONAL = {"pl.atlas": "path"}
# plots that draw no matplotlib figure
NOT_A_FIGURE = {"pl.atlas": "writes an HTML page"}


def _public_functions():
    for ns in NAMESPACES + (["sim"] if hasattr(sl, "sim") else []):
        mod = getattr(sl, ns)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"{ns}.{name}", ns, obj


FUNCS = list(_public_functions())


def test_namespaces_have_all():
    for ns in NAMESPACES:
        mod = getattr(sl, ns)
        assert sorted(mod.__all__) == sorted(set(mod.__all__))
        for name in mod.__all__:
            assert hasattr(mod, name), f"sl.{ns}.__all__ names {name!r} that does not exist"


@pytest.mark.parametrize(("qualname", "ns", "func"), FUNCS, ids=[f[0] for f in FUNCS])
def test_signature_rules(qualname, ns, func):
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    exempt = NOT_ADATA_FIRST.get(qualname) or NOT_ADATA_FIRST.get(ns) == "*" or (ns == "sim" and not positional)
    if not exempt:
        assert positional and positional[0].name in ("adata", "mdata"), f"{qualname}: first argument must be adata"
        names = [p.name for p in positional[1:]]
        assert names == ([SECOND_POSITIONAL[qualname]] if qualname in SECOND_POSITIONAL else []), (
            f"{qualname}: everything after adata must be keyword-only (use `*`)"
        )
    elif NOT_ADATA_FIRST.get(ns) == "*":
        assert len(positional) <= 2, f"{qualname}: at most two positional arguments (e.g. path, organism)"
    hints = typing.get_type_hints(func)
    for p in params:
        is_bool = hints.get(p.name) is bool or isinstance(p.default, bool)
        if is_bool:
            assert p.kind == p.KEYWORD_ONLY, f"{qualname}: boolean {p.name!r} must be keyword-only"
    if "copy" in sig.parameters:
        p = sig.parameters["copy"]
        assert p.kind == p.KEYWORD_ONLY and p.default is False, f"{qualname}: copy must be keyword-only, default False"
        ret = str(sig.return_annotation).replace(" ", "")
        assert "AnnData|None" in ret or "None|AnnData" in ret, f"{qualname}: with copy, return AnnData | None"
    if ns == "pl" and qualname not in NOT_A_FIGURE:
        for name in ("ax", "show", "return_fig"):
            assert name in sig.parameters, f"{qualname}: plots take {name!r}"


@pytest.mark.parametrize(("qualname", "ns", "func"), FUNCS, ids=[f[0] for f in FUNCS])
def test_docstrings_filled(qualname, ns, func):
    doc = func.__doc__
    assert doc, f"{qualname} has no docstring"
    assert not re.search(r"^\s*\{[a-z_]+\}\s*$", doc, flags=re.M), f"{qualname}: unfilled docstring placeholder"
    assert "Parameters" in doc or not inspect.signature(func).parameters, f"{qualname}: no Parameters section"
    documented = set(re.findall(r"^(\w+)(?:, \w+)*\n", doc, flags=re.M))
    documented |= {n.strip() for line in re.findall(r"^(\w+(?:, \w+)+)\n", doc, flags=re.M) for n in line.split(",")}
    for name, p in inspect.signature(func).parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        assert name in documented, f"{qualname}: parameter {name!r} is not documented"

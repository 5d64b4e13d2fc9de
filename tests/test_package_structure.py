"""Walk the public API and enforce its signature, vocabulary and docstring rules.

The rules (docs/api.md, "Keys each function reads and writes"): ``adata`` first and everything
else keyword-only; inputs that name a stored run are ``sae_key`` / ``annotation_key`` (never a bare
``key``); every function that writes to the AnnData has ``key_added``; choices are typed with
``Literal``; features are ``features: int | Sequence[int]``; plots take ``ax``, ``show``, ``save``,
``return_fig``.
"""

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


# `sl.tl.steer` / `sl.pl.steering` are renamed with the steering work; drop them here when it lands.
VOCABULARY_PENDING: set[str] = set()
# parameters that name a stored result to read, with their default
INPUT_KEYS = {
    "sae_key": "sae",
    "annotation_key": "sae_go",
    "annotation_key_a": "sae_go",
    "annotation_key_b": "sae_go",
    "space_key": "feature_space",
    "specificity_key": "specificity",
    "connectivity_key": "connectivity",
    "sae_keys": None,
    "alignment_key": "alignment",
    "null_key": "annotation_null",
    "evaluation_key": "evaluation",
    "steer_key": "steer",
    "batch_key": None,  # obs columns, as scanpy's `batch_key`
    "label_key": None,
}
# writers without `key_added`: they only add columns to tables that already exist
ADDS_COLUMNS_ONLY = {"tl.term_redundancy": "adds columns to the annotation's results and the SAE features table"}
CHOICES = {"architecture", "de_method", "enrichment", "flavor", "method", "loss", "likelihood", "x_distribution",
           "preset", "source", "organism"}  # fmt: skip
TYPED = {"features", "gene_sets", "cells", "groups", "reference", "return_de", "categories"}


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
        plot_params = (
            ("ax", "show", "return_fig") if qualname in VOCABULARY_PENDING else ("ax", "show", "save", "return_fig")
        )
        for name in plot_params:
            assert name in sig.parameters, f"{qualname}: plots take {name!r}"


@pytest.mark.parametrize(("qualname", "ns", "func"), FUNCS, ids=[f[0] for f in FUNCS])
def test_vocabulary(qualname, ns, func):
    if qualname in VOCABULARY_PENDING:
        pytest.skip("renamed with the steering work")
    sig = inspect.signature(func)
    hints = {k: str(v) for k, v in typing.get_type_hints(func).items()}
    for name, p in sig.parameters.items():
        assert name != "key", f"{qualname}: a bare `key`; name the run it reads (sae_key, annotation_key) or key_added"
        if "key" in name and name != "key_added":
            assert name in INPUT_KEYS, f"{qualname}: {name!r} is not one of the key names {sorted(INPUT_KEYS)}"
            default = INPUT_KEYS[name]
            assert p.default in (default, None, p.empty), (
                f"{qualname}: {name} defaults to {default!r}, got {p.default!r}"
            )
        if name in CHOICES and not (name == "source" and ns != "datasets"):  # steer_towards: source cells
            assert "Literal" in hints[name], f"{qualname}: choice parameter {name!r} must be typed with Literal"
        if name in TYPED:
            assert hints.get(name, "typing.Any") != "typing.Any", f"{qualname}: {name!r} has a known type, not Any"
        if name == "features":
            assert "int" in hints[name] and "Sequence" in hints[name], f"{qualname}: features is int | Sequence[int]"
        assert name not in ("feature", "group", "within", "colors"), f"{qualname}: {name!r} is not in the vocabulary"
    if "copy" in sig.parameters and qualname not in ADDS_COLUMNS_ONLY:
        assert "key_added" in sig.parameters, f"{qualname} writes to the AnnData: it needs `key_added`"


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

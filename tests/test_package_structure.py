"""Walk the public API and enforce its signature, vocabulary and docstring rules.

The rules (docs/api.md, "Keys each function reads and writes"): ``adata`` first and everything
else keyword-only; inputs that name a stored run are ``sae_key`` / ``annotation_key`` (never a bare
``key``); every function that writes to the AnnData has ``key_added``; choices are typed with
``Literal``; features are ``features: int | Sequence[int]``; plots take ``ax``, ``show``, ``save``,
``return_fig``.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path

import numpy as np
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


# ---- storage structure: the one result layout, the readers, the features-table columns ----
SRC = Path(sl.__file__).parent
# the only modules that read `adata.uns` themselves, and why (everything else goes through sclens._readers)
UNS_READERS = {
    "_readers.py": "the readers",
    "_provenance.py": "run ids; drops the results of a replaced run",
    "_columns.py": "the one writer of the features table",
    "_utils.py": "sae_activations / check_sae_keys: a run exists beside its activations",
    "tl/_fit.py": "writes the SAE run; a re-encoded run keeps its results",
    "tl/_trust/_baseline.py": "writes a baseline run",
    "datasets/_pbmc.py": "reads scanpy's dataset, not a sclens result",
}


def _uns_reads(path: Path) -> list[int]:
    """Lines of ``path`` that read ``<x>.uns`` (anything but storing into or deleting from ``<x>.uns[...]``)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "uns":
            parent = parents.get(node)
            writes = isinstance(parent, ast.Subscript) and isinstance(parent.ctx, (ast.Store, ast.Del))
            if not writes:
                lines.append(node.lineno)
    return lines


def test_no_module_reads_uns_outside_the_readers():
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in UNS_READERS or rel.startswith("sim/_simulate") or rel == "datasets/_toy.py":
            continue
        lines = _uns_reads(path)
        if lines:
            offenders[rel] = lines
    assert not offenders, f"read `adata.uns` through sclens._readers (result, sae_run, annotation, ...): {offenders}"
    for rel in UNS_READERS:
        assert (SRC / rel).is_file(), f"UNS_READERS names {rel}, which does not exist"


@pytest.fixture(scope="module")
def pipeline():
    """A toy AnnData through every tool that stores a result."""
    from biology_fixtures import toy_with_sae

    adata = toy_with_sae(n_cells=300)
    adata.uns["sae"]["run_id"] = "run-1"
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.feature_specificity(adata, groupby="cell_type")
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", min_size=3, high_quantile=0.9, n_low=100)
    sl.tl.feature_alignment(adata, groupby="cell_type", technical="batch")
    sl.tl.annotation_null(adata, gene_sets=gs, n_permutations=1, nulls=["cells"])
    sl.tl.baseline_features(adata, use_rep="X_emb", method="pca", n_components=4)
    return adata


def test_every_derived_result_has_the_one_layout(pipeline):
    from sclens._provenance import RUN_ENTRIES
    from sclens._readers import RESULTS, result

    adata = pipeline
    run_id = adata.uns["sae"]["run_id"]
    derived = {k: v for k, v in adata.uns["sae"].items() if k not in RUN_ENTRIES}
    assert set(derived) == {"specificity", "alignment", "annotation_null"}
    for key, value in derived.items():
        assert set(value) == {*RESULTS[key].tables, "params"}, key
        assert (value["params"]["sae_key"], value["params"]["sae_run_id"]) == ("sae", run_id), key
        assert result(adata, key, key=key, parent="sae") is value
    ann = adata.uns["sae_go"]
    assert ann["params"]["sae_run_id"] == run_id and ann["run_id"] != run_id
    assert adata.uns["sae"]["annotation_null"]["params"]["annotation_run_id"] == ann["run_id"]
    for kind in RESULTS.values():  # every kind names a public tool that writes it
        ns, name = kind.made_by.removeprefix("sl.").split(".")
        assert name in getattr(sl, ns).__all__, kind.made_by


def test_every_features_table_column_is_registered(pipeline):
    from sclens._columns import column, markdown_table

    for key in ("sae", "pca_baseline"):
        table = pipeline.uns[key]["features"]
        unregistered = [c for c in table.columns if column(c) is None]
        assert not unregistered, f"features-table columns of {key!r} not in sclens._columns.COLUMNS: {unregistered}"
        for name in table.columns.difference(["frequency", "mean_activation", "max_activation"] if key == "sae" else []):
            spec = column(name)  # (the toy's SAE run is hand-built: its fit columns are float32)
            expected = "object" if spec.dtype == "str" else spec.dtype
            assert str(table[name].dtype) == expected, f"{key}: column {name!r} is {table[name].dtype}, not {expected}"
    storage = (SRC.parents[1] / "docs" / "storage.md").read_text()
    assert markdown_table() in storage, "docs/storage.md: regenerate the column table from sclens._columns"


# ---- choices: every list of names comes from its registry ----
def _registries() -> dict[str, set[str]]:
    from sclens.sae._registry import _REGISTRY
    from sclens.tl._annotation._engines import DE_ENGINES, ENRICHMENTS, FLAVORS
    from sclens.tl._specificity import METHODS

    builtin = {n for n, c in _REGISTRY.items() if c.__module__.startswith("sclens.")}  # tests register their own
    return {"architecture": builtin, "de_method": set(DE_ENGINES), "enrichment": set(ENRICHMENTS),
            "flavor": set(FLAVORS), "specificity method": set(METHODS)}  # fmt: skip


def test_choices_match_the_registries():
    from sclens._cli import build_parser
    from sclens._cli._pipeline import choices
    from sclens.tl._annotation._annotate import DEMethod
    from sclens.tl._annotation._engines import de_methods
    from sclens.tl._fit import Architecture

    reg = _registries()
    assert set(typing.get_args(Architecture)) == reg["architecture"]
    assert list(typing.get_args(DEMethod)) == de_methods()
    assert set(typing.get_args(typing.get_type_hints(sl.tl.annotate_features)["flavor"])) == reg["flavor"]
    assert set(typing.get_args(typing.get_type_hints(sl.tl.feature_specificity)["method"])) == reg["specificity method"]
    from sclens.sae import SAEConfig

    for doc in (sl.tl.fit_sae.__doc__, SAEConfig.__doc__):  # the docs name every architecture
        assert all(f'``"{name}"``' in doc for name in reg["architecture"])
    from sclens._cli._pipeline import ConfigError, check_choices

    with pytest.raises(ConfigError, match=r"`annotate.de_method` must be one of \['fast', 'deseq2'\], got 'edger'"):
        check_choices("annotate", {"de_method": "edger", "layer": "counts"})
    assert {k for k, _ in choices()} <= set(build_parser()._actions[-1].choices)  # sections that are commands
    assert set(choices()["fit", "architecture"]) == reg["architecture"]


REGISTRY_TUPLES = {"METHODS"}  # a registry that is a plain tuple (feature_specificity's methods)


def test_no_hand_written_list_of_registered_names():
    """A list or tuple of two or more registered names in the source is a copy of a registry."""
    names = set().union(*_registries().values())
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        literal_args = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Subscript)
                        and getattr(node.value, "id", "") == "Literal" for n in ast.walk(node.slice)}  # fmt: skip
        literal_args |= {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                         and any(getattr(t, "id", "") in REGISTRY_TUPLES for t in node.targets)}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and id(node) not in literal_args:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if len(values) == len(node.elts) >= 2 and len(set(values) & names) >= 2:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {values}")
    assert not offenders, f"lists of registered names written by hand (read the registry instead): {offenders}"

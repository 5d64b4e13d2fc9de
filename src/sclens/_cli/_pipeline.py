"""The steps of the ``sclens`` command: one function per step, a validated config that chains them.

A config (``sclens run CONFIG.yaml``) is a mapping; every section is optional except ``input``::

    input: data.h5ad           # AnnData to read (relative paths: relative to the config file)
    output: results.h5ad       # AnnData written with every result (default: <input>_sclens.h5ad)
    seed: 0                    # random_state of every step
    fit:                       # sl.tl.fit_sae
      use_rep: X_scVI          # required
      n_features: 2000
      k: 32
    specificity:               # sl.tl.feature_specificity
      groupby: cell_type       # required
    annotate:                  # sl.tl.annotate_features
      gene_sets: go-human      # required: go-human, go-mouse or a .gmt file
      namespaces: [BP, MF]     # GO namespaces (go-* only)
      layer: counts
    feature_space: {}          # sl.tl.feature_space (namespaces: null for GMT gene sets)
    atlas:                     # sl.pl.atlas
      path: atlas.html         # required
      basis: umap
"""

from __future__ import annotations

import inspect
import logging
import re
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._utils import group_labels

logger = logging.getLogger("sclens")

_NUM = (int, float)


@dataclass(frozen=True)
class Key:
    """One key of a config section, and the ``--key-name`` option of the subcommand that runs the section.

    ``types``: what the YAML value may be; ``required``; ``short``: a short option (``-k``); ``help``:
    the option's help where the command line differs from the function (otherwise the first
    sentence of the function's docstring is shown, with its default and choices: :func:`option_help`);
    ``open_choice``: the function's ``Literal[...] | str`` lists examples and any other name is
    passed on (not checked as a choice).
    """

    types: tuple[type, ...]
    required: bool = False
    short: str | None = None
    help: str | None = None
    open_choice: bool = False


def _keys(types: dict[str, tuple[type, ...]], **special: Key) -> dict[str, Key]:
    return {name: special.get(name, Key(t)) for name, t in types.items()}


# section -> {key: Key}: the one list of the config keys and of the subcommands' options
SCHEMA: dict[str, dict[str, Key]] = {
    "fit": _keys(
        {"use_rep": (str,), "n_features": (int,), "expansion_factor": (int,), "architecture": (str,), "k": (int,),
         "l1_weight": _NUM, "lr": _NUM, "n_epochs": (int,), "batch_size": (int,), "validation_fraction": _NUM,
         "device": (str,), "key_added": (str,)},
        use_rep=Key((str,), required=True), k=Key((int,), short="-k"),
    ),
    "specificity": _keys(
        {"groupby": (str,), "method": (str,), "alpha": _NUM, "min_effect": _NUM, "sae_key": (str,)},
        groupby=Key((str,), required=True),
    ),
    "annotate": _keys(
        {"gene_sets": (str,), "namespaces": (list,), "layer": (str,), "high_quantile": _NUM, "low_quantile": _NUM,
         "n_low": (int,), "min_high": (int,), "de_method": (str,), "enrichment": (str,), "alpha": _NUM,
         "de_alpha": _NUM, "min_log2fc": _NUM, "max_de_genes": (int, type(None)), "independent_filter": (bool,),
         "go_algorithm": (str,), "dispersions": (str,), "min_size": (int,), "max_size": (int,), "flavor": (str,),
         "sae_key": (str,), "key_added": (str,)},
        gene_sets=Key((str,), required=True, help="go-human, go-mouse (the embedded GO snapshot) or a .gmt file"),
        enrichment=Key((str,), open_choice=True),  # 'ora' or any decoupler method
        namespaces=Key((list,), help="GO namespaces of go-human / go-mouse, comma-separated (default: BP,MF,CC)"),
    ),
    "feature_space": _keys({"namespaces": (list, type(None)), "n_neighbors": (int,), "annotation_key": (str,)}),
    "atlas": _keys(
        {"path": (str,), "basis": (str,), "groupby": (str,), "max_cells": (int,), "max_terms": (int,),
         "n_genes": (int,), "title": (str,), "sae_key": (str,), "annotation_key": (str,)},
        path=Key((str,), required=True),
    ),
}  # fmt: skip
REQUIRED = {section: [k for k, key in keys.items() if key.required] for section, keys in SCHEMA.items()}
TOP_LEVEL = {"input": (str,), "output": (str,), "seed": (int,), **{s: (dict,) for s in SCHEMA}}
# section -> the public function whose keyword arguments its keys are (``namespace.name``)
FUNCTIONS = {"fit": "tl.fit_sae", "specificity": "tl.feature_specificity", "annotate": "tl.annotate_features",
             "feature_space": "tl.feature_space", "atlas": "pl.atlas"}  # fmt: skip


def function(section: str) -> Any:
    """Return the public function that runs config section ``section`` (imports its namespace)."""
    import sclens as sl

    namespace, name = FUNCTIONS[section].split(".")
    return getattr(getattr(sl, namespace), name)


def _literal(func: Any, name: str) -> list[str] | None:
    """Return the strings of the ``Literal`` type of ``func``'s parameter ``name`` (also in ``Literal[...] | str``)."""
    hint = typing.get_type_hints(func).get(name)  # (a stand-in function in a test: none)
    parts = (hint,) if typing.get_origin(hint) is typing.Literal else typing.get_args(hint)
    values = [v for part in parts if typing.get_origin(part) is typing.Literal for v in typing.get_args(part)]
    return [v for v in values if isinstance(v, str)] or None


def choices(keys: Any = None) -> dict[tuple[str, str], list[str]]:
    """``(section, key) -> allowed values`` of the choice keys (``keys``: only those; imports only what they need).

    A key is a choice when the function of its section types it with ``Literal`` (unless the key
    is an ``open_choice``), which ``tests/test_package_structure.py`` checks against the
    registries (SAE architectures, DE engines, flavors, specificity methods).
    """
    wanted = [(s, k) for s, ks in SCHEMA.items() for k in ks] if keys is None else list(keys)
    out = {}
    for section, key in wanted:
        if key not in SCHEMA.get(section, {}) or SCHEMA[section][key].open_choice:
            continue
        allowed = _literal(function(section), key)
        if allowed:
            out[section, key] = allowed
    return out


def _plain(text: str) -> str:
    """Docstring markup as plain text: ````x```` -> ``x``, ``:func:`~a.b``` -> ``b``."""
    text = re.sub(r":\w+:`~([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return re.sub(r":\w+:`([^`]+)`", r"\1", text).replace("``", "")


def _doc_of(func: Any, name: str) -> str:
    """First sentence of the description of parameter ``name`` in ``func``'s numpy docstring (``""``: none)."""
    doc = inspect.getdoc(func) or ""
    params = doc.split("Parameters\n----------\n", 1)[-1].split("\nReturns\n", 1)[0]
    found = re.search(rf"^(?:\w+, )*{name}(?:, \w+)*\n((?:[ \t]+.*\n?)+)", params, flags=re.M)
    if found is None:
        return ""
    text = " ".join(line.strip() for line in found.group(1).splitlines())
    return _plain(re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]).replace(" (see Returns)", "").rstrip(".")


def option_help(section: str, key: str) -> str:
    """Return the help of the ``--key`` option of the subcommand running ``section``.

    The :class:`Key`'s own help, or the first sentence of the function's docstring with its
    default (unless ``None``) and choices.
    """
    own = SCHEMA[section][key].help
    if own is not None:
        return own
    func = function(section)
    text = textwrap.shorten(_doc_of(func, key), 240, placeholder=" ...")  # the API docs have the rest
    default = inspect.signature(func).parameters[key].default
    extra = [] if default is None or default is inspect.Parameter.empty else [f"default: {default}"]
    allowed = choices([(section, key)]).get((section, key))
    extra += [f"one of {', '.join(allowed)}"] if allowed else []
    return f"{text} ({'; '.join(extra)})" if extra else text


class ConfigError(ValueError):
    """A config file that does not follow the schema."""


def _check_type(where: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        msg = f"{where} must be {names}, got {value!r}."
        raise ConfigError(msg)


def _check_section(section: str, params: dict[str, Any]) -> None:
    """Refuse unknown or missing keys and values of the wrong type in one config section."""
    bad = sorted(set(params) - set(SCHEMA[section]))
    if bad:
        msg = f"unknown key(s) {bad} in `{section}`; allowed: {sorted(SCHEMA[section])}."
        raise ConfigError(msg)
    for key in REQUIRED.get(section, []):
        if key not in params:
            msg = f"`{section}` needs `{key}`."
            raise ConfigError(msg)
    for key, value in params.items():
        _check_type(f"`{section}.{key}`", value, SCHEMA[section][key].types)
    check_choices(section, params)


def check_choices(section: str, params: dict[str, Any]) -> None:
    """Refuse a value of a choice key that is not one of :func:`choices` (``None``: the default, accepted)."""
    for key, value in params.items():
        allowed = choices([(section, key)]).get((section, key)) if value is not None else None
        if allowed is not None and value not in allowed:
            msg = f"`{section}.{key}` must be one of {allowed}, got {value!r}."
            raise ConfigError(msg)


def validate(config: Any, *, base: Path) -> dict[str, Any]:
    """Check a config against :data:`SCHEMA`; return it with paths resolved against ``base``."""
    if not isinstance(config, dict):
        msg = f"the config must be a mapping of sections (input, fit, annotate, ...), got {type(config).__name__}."
        raise ConfigError(msg)
    unknown = sorted(set(config) - set(TOP_LEVEL))
    if unknown:
        msg = f"unknown key(s) {unknown} in the config; allowed: {sorted(TOP_LEVEL)}."
        raise ConfigError(msg)
    if "input" not in config:
        msg = "the config needs `input: <file>.h5ad`."
        raise ConfigError(msg)
    for key, types in TOP_LEVEL.items():
        if key in config:
            _check_type(f"`{key}`", {} if config[key] is None and dict in types else config[key], types)
    out = {k: (dict(v or {}) if k in SCHEMA else v) for k, v in config.items()}
    for section in (s for s in SCHEMA if s in out):
        _check_section(section, out[section])
    if "feature_space" in out and "annotate" not in out:
        logger.info("feature_space without annotate: reading an annotation stored in the input.")
    out["input"] = str(base / out["input"])
    if "output" in out:
        out["output"] = str(base / out["output"])
    if "atlas" in out:
        out["atlas"]["path"] = str(base / out["atlas"]["path"])
    if "annotate" in out and not out["annotate"]["gene_sets"].startswith("go-"):
        out["annotate"]["gene_sets"] = str(base / out["annotate"]["gene_sets"])
    return out


def call(func: Any, adata: Any, *, keep_none: tuple[str, ...] = (), **kw: Any) -> Any:
    """Call ``func`` with the keywords given (``None``: the function's default, except ``keep_none``)."""
    return func(adata, **{k: v for k, v in kw.items() if v is not None or k in keep_none})


def gene_sets(spec: str, *, namespaces: list[str] | None = None) -> Any:
    """``go-human`` / ``go-mouse`` (embedded GO snapshot) or the path of a GMT file."""
    import sclens as sl

    if spec.startswith("go-"):
        kw = {"namespaces": tuple(namespaces)} if namespaces else {}
        return sl.datasets.go_gene_sets(spec[3:], **kw)
    path = Path(spec)
    if not path.is_file():
        msg = f"gene sets {spec!r}: not 'go-human' / 'go-mouse' and no such GMT file."
        raise FileNotFoundError(msg)
    return sl.datasets.read_gmt(path)


def run_steps(adata: Any, cfg: dict[str, Any]) -> None:
    """Run the configured steps in order on ``adata`` (in place); the gene sets are read first."""
    import sclens as sl

    sets = None
    if "annotate" in cfg:  # read (and check) the gene sets before the long steps
        sets = gene_sets(cfg["annotate"]["gene_sets"], namespaces=cfg["annotate"].get("namespaces"))
    seed = cfg.get("seed", 0)
    if "fit" in cfg:
        call(sl.tl.fit_sae, adata, random_state=seed, **cfg["fit"])
    sae_key = cfg.get("fit", {}).get("key_added")
    if "specificity" in cfg:
        call(sl.tl.feature_specificity, adata, **{"sae_key": sae_key, **cfg["specificity"]})
    if "annotate" in cfg:
        kw = {k: v for k, v in cfg["annotate"].items() if k not in ("gene_sets", "namespaces")}
        call(sl.tl.annotate_features, adata, gene_sets=sets, random_state=seed, **{"sae_key": sae_key, **kw})
    if "feature_space" in cfg:
        kw = dict(cfg["feature_space"])
        ann = kw.pop("annotation_key", None) or cfg.get("annotate", {}).get("key_added")
        keep = ("namespaces",) if "namespaces" in kw else ()
        call(sl.tl.feature_space, adata, annotation_key=ann, random_state=seed, keep_none=keep, **kw)


def _need(section: str, key: str, value: Any, where: Any, what: str) -> None:
    if value is not None and value not in where:
        msg = (
            f"`{section}.{key}`: {value!r} is not in the input's {what}; available: {sorted(map(str, where))}. "
            "Nothing was computed."
        )
        raise ConfigError(msg)


def check_inputs(adata: Any, cfg: dict[str, Any]) -> None:
    """Check every step's inputs against the data before any step runs (a wrong name fails in seconds)."""
    fit, spec, ann, atlas = (cfg.get(s, {}) for s in ("fit", "specificity", "annotate", "atlas"))
    if "fit" in cfg and ":" not in fit["use_rep"]:  # "rna:X_scVI" (MuData) is checked by fit_sae
        _need("fit", "use_rep", fit["use_rep"], adata.obsm, "obsm")
    if "fit" not in cfg and any(s in cfg for s in ("specificity", "annotate", "atlas")):
        key = spec.get("sae_key") or ann.get("sae_key") or atlas.get("sae_key") or "sae"
        _need("fit", "key_added", f"X_{key}", adata.obsm, "obsm (an SAE run to read: add a `fit` section)")
    _need("specificity", "groupby", spec.get("groupby"), adata.obs.columns, "obs columns")
    if spec.get("groupby") is not None:  # a measurement (e.g. n_counts) is refused as a grouping
        group_labels(adata, spec["groupby"])
    _need("annotate", "layer", ann.get("layer"), adata.layers, "layers")
    if "annotate" in cfg and not ann["gene_sets"].startswith("go-") and not Path(ann["gene_sets"]).is_file():
        msg = f"`annotate.gene_sets`: {ann['gene_sets']!r} is not 'go-human' / 'go-mouse' and no such GMT file."
        raise ConfigError(msg)
    if "atlas" in cfg:
        basis = atlas.get("basis", "umap")
        _need("atlas", "basis", basis if basis in adata.obsm else f"X_{basis}", adata.obsm, "obsm")
        _need("atlas", "groupby", atlas.get("groupby"), adata.obs.columns, "obs columns")

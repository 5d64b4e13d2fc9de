"""One function per ``sclens`` subcommand, and their argument parsers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .._utils import atomic_path
from ._pipeline import (
    REQUIRED,
    SCHEMA,
    ConfigError,
    Key,
    call,
    check_choices,
    check_inputs,
    option_help,
    run_steps,
    validate,
)

logger = logging.getLogger("sclens")
MAX_CONFIG_BYTES = 1 << 20


class OutputWritten(Exception):
    """A step failed after the h5ad output was written in full (the message says which file holds what)."""


def read(path: str) -> Any:
    """Return the AnnData in ``path``, with a clear error when it is not an h5ad file."""
    import anndata

    p = Path(path)
    if not p.is_file():
        msg = f"input file {path!r} not found."
        raise FileNotFoundError(msg)
    try:
        return anndata.read_h5ad(p)
    except OSError as err:
        msg = f"{path!r} is not a readable h5ad file ({err})."
        raise ValueError(msg) from err


def check_output(path: str | Path, *, suffix: str | None = ".h5ad") -> Path:
    """Refuse an output path that cannot be written, before any work: wrong suffix, directory, no parent."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        msg = f"output {str(path)!r} must end with {suffix}."
        raise ValueError(msg)
    if path.is_dir():
        msg = f"output {str(path)!r} is a directory; pass a file name."
        raise IsADirectoryError(msg)
    if not path.parent.is_dir():
        msg = f"Directory {str(path.parent)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    return path


def write(adata: Any, path: str | Path) -> None:
    """``adata.write_h5ad(path)`` through a temporary file."""
    path = check_output(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    logger.info("wrote %s", path)


def _steps(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    out = check_output(args.output)  # fail before the long step, not after it
    adata = read(args.input)
    check_inputs(adata, cfg)
    run_steps(adata, {"seed": args.seed, **cfg})
    write(adata, out)


def section(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Return the config section ``name`` built from the command-line options (those named in :data:`SCHEMA`).

    Choices are checked here, not by argparse, so that ``sclens --help`` does not import the tools.
    """
    kw = {k: getattr(args, k) for k in SCHEMA[name] if hasattr(args, k)}
    check_choices(name, kw)
    return kw


def cmd_fit(args: argparse.Namespace) -> None:
    _steps(args, {"fit": section(args, "fit")})


def cmd_specificity(args: argparse.Namespace) -> None:
    _steps(args, {"specificity": section(args, "specificity")})


def cmd_annotate(args: argparse.Namespace) -> None:
    _steps(args, {"annotate": section(args, "annotate")})


def cmd_atlas(args: argparse.Namespace) -> None:
    import sclens as sl

    adata = read(args.input)
    kw = section(args, "atlas")
    path = call(sl.pl.atlas, adata, path=args.output, **kw)
    print(path)


def cmd_run(args: argparse.Namespace) -> None:
    import yaml

    cfg_path = Path(args.config)
    if not cfg_path.is_file():
        msg = f"config file {args.config!r} not found."
        raise FileNotFoundError(msg)
    size = cfg_path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        msg = f"config {args.config!r} is {size:,} bytes; a config is a few lines (at most {MAX_CONFIG_BYTES:,} bytes)."
        raise ConfigError(msg)
    try:  # safe_load: YAML tags never build Python objects
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        msg = f"{args.config!r} is not valid YAML: {err}"
        raise ConfigError(msg) from err
    except RecursionError as err:
        msg = f"{args.config!r} is nested too deeply to be a config (sections hold keys and values)."
        raise ConfigError(msg) from err
    cfg = validate(raw, base=cfg_path.resolve().parent)
    pipeline(cfg)


def pipeline(cfg: dict[str, Any], adata: Any = None) -> None:
    """Run a validated config: read (unless ``adata`` given), every step, write the h5ad, the atlas."""
    import sclens as sl

    output = check_output(cfg.get("output") or Path(cfg["input"]).with_suffix("").as_posix() + "_sclens.h5ad")
    if "atlas" in cfg:
        check_output(cfg["atlas"]["path"], suffix=None)
    adata = read(cfg["input"]) if adata is None else adata
    check_inputs(adata, cfg)
    run_steps(adata, cfg)
    write(adata, output)
    if "atlas" in cfg:
        kw = dict(cfg["atlas"])
        kw.setdefault("sae_key", cfg.get("fit", {}).get("key_added"))
        kw.setdefault("annotation_key", cfg.get("annotate", {}).get("key_added"))
        try:
            print(call(sl.pl.atlas, adata, **kw))
        except BaseException as err:  # Ctrl-C too: the h5ad stays, the message says so
            msg = (
                f"the atlas step failed ({type(err).__name__}: {err}) after {str(output)!r} was written in full "
                f"with every other result; fix it and run `sclens atlas {output} -o {kw['path']}`."
            )
            raise OutputWritten(msg) from err


def cmd_demo(args: argparse.Namespace) -> None:
    import sclens as sl

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        msg = f"-o {args.output!r} is a file; `sclens demo` writes a directory (pbmc_sclens.h5ad, atlas.html)."
        raise FileExistsError(msg)
    out.mkdir(parents=True, exist_ok=True)
    adata = sl.datasets.pbmc68k_counts()
    cfg = {
        "input": "pbmc68k_counts (scanpy's pbmc68k_reduced with recovered counts)",
        "output": str(out / "pbmc_sclens.h5ad"),
        "seed": 0,
        "fit": {"use_rep": "X_pca", "n_features": 256, "k": 16, "n_epochs": 200, "lr": 1e-3},
        "specificity": {"groupby": "bulk_labels"},
        "annotate": {"gene_sets": "go-human", "namespaces": ["BP", "MF"], "layer": "counts"},
        "feature_space": {},
        "atlas": {"path": str(out / "atlas.html"), "title": "sclens atlas: 700 PBMCs (pbmc68k_reduced)"},
    }  # fmt: skip
    pipeline(cfg, adata=adata)


COMMANDS = {
    "fit": cmd_fit, "specificity": cmd_specificity, "annotate": cmd_annotate, "atlas": cmd_atlas,
    "run": cmd_run, "demo": cmd_demo,
}  # fmt: skip


#: the subcommands that run one config section: command -> (what it does, a longer description or None)
STEPS = {
    "fit": ("train a sparse autoencoder on an embedding (sl.tl.fit_sae)", None),
    "specificity": ("local / global features per cell group (sl.tl.feature_specificity)", None),
    "annotate": (
        "GO terms of every feature (sl.tl.annotate_features)",
        "Annotate every SAE feature with the GO terms its most active cells up-regulate "
        "(sl.tl.annotate_features). Exits with status 1 and the reason when no feature can be tested.",
    ),
    "atlas": ("write the feature atlas, one offline HTML page (sl.pl.atlas)", None),
}
#: the options of a step command that are not keys of its section: top-level config keys
TOP_OPTIONS = {"input", "output", "seed"}


class _Help(argparse.HelpFormatter):
    """Help lines of the section options read from the functions (docstring, default, choices).

    They are made only when ``--help`` is asked, so building the parser imports no tool.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        where = getattr(action, "sclens_key", None)
        return option_help(*where).replace("%", "%%") if where else super()._get_help_string(action)


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _boolean(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        msg = f"expected true or false, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _or_none(parse: Any) -> Any:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its errors
    return parse_or_none


def _type(key: Key) -> Any:
    """Return the argparse ``type`` of a config key.

    A list is comma-separated on the command line, a boolean is true / false, and ``none`` stands for
    ``None`` where the key takes it.
    """
    if list in key.types:
        return _comma_list
    if bool in key.types:
        return _boolean
    parse = float if float in key.types else key.types[0]
    return _or_none(parse) if type(None) in key.types else parse


def _section_options(p: argparse.ArgumentParser, name: str) -> None:
    """One ``--key-name`` option per key of config section ``name`` (default ``None``: the function's own)."""
    for key, spec in SCHEMA[name].items():
        if name == "atlas" and key == "path":  # the page: -o
            continue
        flags = [f"--{key.replace('_', '-')}", *([spec.short] if spec.short else [])]
        action = p.add_argument(*flags, dest=key, type=_type(spec), required=spec.required, help="(from the API)")
        action.sclens_key = (name, key)


def add_parsers(sub: Any) -> None:
    """Add every subcommand's parser to ``sub``: the step commands' options come from :data:`SCHEMA`."""
    for name, (short, description) in STEPS.items():
        p = sub.add_parser(name, help=short, description=description or short, formatter_class=_Help)
        p.add_argument("input", help="input .h5ad")
        out = "output .html" if name == "atlas" else "output .h5ad (written via a temporary file)"
        p.add_argument("-o", "--output", required=True, help=out)
        _section_options(p, name)
        if name != "atlas":
            p.add_argument("--seed", type=int, default=0, help="random_state of the step (default: %(default)s)")

    p = sub.add_parser(
        "run", help="the whole pipeline from a YAML config", description=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("config", help="YAML config file")

    p = sub.add_parser("demo", help="quick start on 700 PBMCs shipped with scanpy: fit, specificity, annotate, atlas")
    p.add_argument("-o", "--output", required=True, help="directory for pbmc_sclens.h5ad and atlas.html")


def _config_help() -> str:
    from . import _pipeline

    required = ", ".join(f"{s}.{k}" for s, ks in REQUIRED.items() for k in ks)
    return f"{_pipeline.__doc__.split('::', 1)[1].rstrip()}\n\nRequired within a section: {required}."

"""The ``sclens`` command line: ``sclens fit | specificity | annotate | atlas | run | demo``.

Every subcommand reads an h5ad, runs one step (or the whole pipeline) and writes its output
through a temporary file renamed at the end, so a failed run never leaves a half-written file.
Errors in the input end the command with exit status 1 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
import time

from ._commands import COMMANDS, add_parsers

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``sclens`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="sclens",
        description="Sparse autoencoders on single-cell embeddings, annotated with Gene Ontology terms.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``sclens`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import sclens as sl

    old = sl.settings.verbosity
    sl.settings.verbosity = 1 if args.quiet else 2
    start = time.perf_counter()
    try:
        COMMANDS[args.command](args)
    except USER_ERRORS as err:
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"sclens {args.command}: error: {' '.join(str(text).split())}", file=sys.stderr)
        return 1
    finally:
        sl.settings.verbosity = old
    if not args.quiet:
        print(f"sclens {args.command}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(main(argv))


__all__ = ["build_parser", "main", "run"]

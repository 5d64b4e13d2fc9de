"""The ``sclens`` command line: ``sclens fit | specificity | annotate | atlas | run | demo``.

Every subcommand reads an h5ad, runs one step (or the whole pipeline) and writes its output
through a temporary file renamed at the end, so a failed run never leaves a half-written file.
Errors in the input end the command with exit status 1 and a one-line message (``--debug``: the
traceback too); an unexpected error says so in one line; Ctrl-C ends it with status 130, leaving
every output file as it was.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time

from ._commands import COMMANDS, OutputWritten, add_parsers

#: errors in what the user gave (FileNotFoundError, PermissionError, a full disk, ...: all OSErrors)
USER_ERRORS = (ValueError, KeyError, TypeError, OSError, ImportError, OutputWritten)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``sclens`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="sclens",
        description="Sparse autoencoders on single-cell embeddings, annotated with Gene Ontology terms.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
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
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"sclens {args.command}: interrupted; output files are as they were.", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"sclens {args.command}: {describe(err)}", file=sys.stderr)
        return 1
    finally:
        sl.settings.verbosity = old
    if not args.quiet:
        print(f"sclens {args.command}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def describe(err: BaseException) -> str:
    """One line for an error: ``error: <message>`` for the user's errors, ``internal error: ...`` otherwise."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(str(text).split())
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        text += " (the disk is full: no output was written and the input is unchanged; free space and run again)"
    if isinstance(err, USER_ERRORS):
        return f"error: {text}"
    return (
        f"internal error: {type(err).__name__}: {text}. This is a bug in sclens or a library it calls; "
        "run again with --debug for the traceback and report it."
    )


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(main(argv))


__all__ = ["build_parser", "main", "run"]

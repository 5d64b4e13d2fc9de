"""A small reader for GO Annotation Files (GAF 2.x)."""

from __future__ import annotations

import logging
from os import PathLike

import pandas as pd

from .._utils import open_text

logger = logging.getLogger("sclens")

# GAF 2.x columns (1-based in the spec): 3 symbol, 4 qualifier, 5 GO ID, 7 evidence, 9 aspect, 11 synonyms
_N_COLUMNS = 15


def read_gaf(path: str | PathLike) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Parse a GAF file (plain or gzip) into direct annotations and symbol aliases.

    Annotations with a ``NOT`` qualifier are dropped (they state that a gene is *not* part of
    the term). Returns ``(annotations, aliases, header)``: ``annotations`` with columns
    ``symbol``, ``go_id``, ``evidence``, unique rows; ``aliases`` with ``alias``, ``symbol`` from
    the synonym column; ``header`` the ``!key: value`` lines (e.g. ``date-generated``).
    """
    rows: list[tuple[str, str, str]] = []
    aliases: set[tuple[str, str]] = set()
    header: dict[str, str] = {}
    n_not = 0
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n\r")
            if not line:
                continue
            if line.startswith("!"):
                key, sep, value = line[1:].partition(":")
                if sep:
                    header.setdefault(key.strip(), value.strip())
                continue
            fields = line.split("\t")
            if len(fields) < _N_COLUMNS:
                msg = (
                    f"GAF line {lineno} of {str(path)!r} has {len(fields)} tab-separated columns, expected at "
                    f"least {_N_COLUMNS}; the file is truncated or not a GAF."
                )
                raise ValueError(msg)
            symbol, qualifier, go_id, evidence = fields[2], fields[3], fields[4], fields[6]
            if "NOT" in qualifier.split("|"):
                n_not += 1
                continue
            if not go_id.startswith("GO:"):
                msg = f"GAF line {lineno} of {str(path)!r}: column 5 should be a GO ID, got {go_id!r}."
                raise ValueError(msg)
            rows.append((symbol, go_id, evidence))
            for synonym in fields[10].split("|"):
                if synonym and synonym != symbol:
                    aliases.add((synonym, symbol))
    if not rows:
        msg = f"No annotation line found in GAF file {str(path)!r}."
        raise ValueError(msg)
    ann = pd.DataFrame(rows, columns=["symbol", "go_id", "evidence"]).drop_duplicates(ignore_index=True)
    alias_df = pd.DataFrame(sorted(aliases), columns=["alias", "symbol"])
    logger.info("Read %d GO annotations (%d NOT dropped) from %s.", len(ann), n_not, path)
    return ann, alias_df, header

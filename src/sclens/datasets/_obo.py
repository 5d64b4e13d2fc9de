"""A small reader for OBO 1.2 ontology files (``go-basic.obo``)."""

from __future__ import annotations

import logging
import re
from os import PathLike

import pandas as pd

from .._utils import open_text
from ._ontology import NAMESPACE_ALIASES, PROPAGATING_RELATIONS, GeneOntology

logger = logging.getLogger("sclens")

_RELEASE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def _strip(value: str) -> str:
    """Drop trailing modifiers ``{...}`` and comments ``! ...`` from an OBO tag value."""
    value = value.split(" ! ", 1)[0].strip()
    return re.sub(r"\s*\{[^}]*\}$", "", value).strip()


def _read_tag(current: dict, tag: str, value: str) -> None:
    """Record one ``tag: value`` line of a [Term] stanza into ``current``."""
    if tag in ("id", "name"):
        current[tag] = _strip(value) if tag == "id" else value
    elif tag == "namespace":
        current["namespace"] = NAMESPACE_ALIASES.get(value, value)
    elif tag == "is_a":
        current["parents"].append((_strip(value), "is_a"))
    elif tag == "relationship":
        rel, _, target = _strip(value).partition(" ")
        if rel in PROPAGATING_RELATIONS:
            current["parents"].append((target.strip(), rel))
    elif tag == "alt_id":
        current["alt"].append(_strip(value))
    elif tag == "is_obsolete" and value.lower() == "true":
        current["obsolete"] = True


def read_obo(path: str | PathLike) -> GeneOntology:
    """Parse an OBO file into a :class:`GeneOntology` (``is_a`` and ``relationship: part_of``).

    Obsolete terms are skipped; ``alt_id`` lines become secondary IDs; other relationships
    (``regulates`` ...) and ``[Typedef]`` stanzas are ignored. The release is read from
    ``data-version: releases/YYYY-MM-DD`` (or ``date:``) in the header.
    """
    terms: list[dict[str, str]] = []
    edges: list[tuple[str, str, str]] = []
    alt_ids: dict[str, str] = {}
    header: dict[str, str] = {}
    stanza: str | None = None
    current: dict | None = None

    def flush() -> None:
        if current is None or current.get("obsolete"):
            return
        if "id" not in current or "namespace" not in current:
            msg = f"OBO term stanza without id or namespace in {str(path)!r}: {current}"
            raise ValueError(msg)
        terms.append({"go_id": current["id"], "name": current.get("name", ""), "namespace": current["namespace"]})
        edges.extend((current["id"], parent, rel) for parent, rel in current["parents"])
        alt_ids.update(dict.fromkeys(current["alt"], current["id"]))

    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("!"):
                continue
            if line.startswith("[") and line.endswith("]"):
                flush()
                stanza = line[1:-1]
                current = {"parents": [], "alt": []} if stanza == "Term" else None
                continue
            if ":" not in line:
                msg = f"Malformed OBO line {lineno} in {str(path)!r}: {line!r} (expected 'tag: value')."
                raise ValueError(msg)
            tag, value = (s.strip() for s in line.split(":", 1))
            if stanza is None:
                header.setdefault(tag, value)
            elif current is not None:
                _read_tag(current, tag, value)
        flush()
    if not terms:
        msg = f"No [Term] stanza found in {str(path)!r}; is it an OBO file?"
        raise ValueError(msg)
    match = _RELEASE.search(header.get("data-version", "")) or _RELEASE.search(header.get("date", ""))
    release = match.group(1) if match else header.get("data-version", header.get("date", "unknown"))
    edge_df = pd.DataFrame(edges, columns=["child", "parent", "relation"])
    onto = GeneOntology(pd.DataFrame(terms), edge_df, release=release, alt_ids=alt_ids)
    logger.info("Read %d GO terms and %d edges from %s (release %s).", len(onto), len(onto.edges), path, release)
    return onto

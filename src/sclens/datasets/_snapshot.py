"""Read and write the embedded GO snapshot (gzip TSV tables with a provenance header + JSON metadata)."""

from __future__ import annotations

import gzip
import io
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ._ontology import GeneOntology

SNAPSHOT = "go_human_2022-07-01"
TABLES = {
    "terms": ["go_id", "name", "namespace"],
    "edges": ["child", "parent", "relation"],
    "annotations": ["symbol", "go_id", "evidence"],
    "aliases": ["alias", "symbol"],
}
LICENCE = (
    "Gene Ontology data (c) the Gene Ontology Consortium, CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/), http://geneontology.org; "
    "gene-to-GO annotations from NCBI Entrez Gene gene2go via Bioconductor org.Hs.eg.db."
)


def _header(metadata: dict[str, Any], table: str) -> str:
    keys = ["go_release", "annotation_source", "annotation_date", "organism", "licence"]
    lines = [f"# sclens embedded GO snapshot {SNAPSHOT}: {table}"]
    lines += [f"# {k}: {metadata[k]}" for k in keys if k in metadata]
    return "\n".join(lines) + "\n"


def write_snapshot(directory: str | Path, tables: dict[str, pd.DataFrame], metadata: dict[str, Any]) -> dict:
    """Write the four tables as ``{SNAPSHOT}.{table}.tsv.gz`` and ``metadata`` as ``{SNAPSHOT}.json``.

    Gzip files are written with a fixed timestamp so that rebuilding gives identical bytes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for table, columns in TABLES.items():
        frame = tables[table][columns]
        text = _header(metadata, table) + frame.to_csv(sep="\t", index=False, lineterminator="\n")
        with (
            open(directory / f"{SNAPSHOT}.{table}.tsv.gz", "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as fh,
        ):
            fh.write(text.encode("utf-8"))
    with open(directory / f"{SNAPSHOT}.json", "w", encoding="utf-8") as fh:
        json.dump(metadata, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return metadata


def _read_table(name: str) -> pd.DataFrame:
    ref = resources.files("sclens.datasets").joinpath("data", f"{SNAPSHOT}.{name}.tsv.gz")
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        text = fh.read()
    body = io.StringIO(text)
    pos = 0
    while text.startswith("#", pos):  # skip the provenance header; names may contain '#'
        pos = text.index("\n", pos) + 1
    body.seek(pos)
    return pd.read_csv(body, sep="\t", dtype=str, keep_default_na=False, na_filter=False)


@lru_cache(maxsize=1)
def load_snapshot() -> tuple[GeneOntology, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Load the embedded snapshot once per process: ``(ontology, annotations, aliases, metadata)``.

    Callers must not modify the returned objects (copy them first).
    """
    ref = resources.files("sclens.datasets").joinpath("data", f"{SNAPSHOT}.json")
    try:
        metadata = json.loads(ref.read_text(encoding="utf-8"))
    except FileNotFoundError as e:  # pragma: no cover - packaging error
        msg = f"The embedded GO snapshot {SNAPSHOT} is missing from the installed sclens; reinstall sclens."
        raise FileNotFoundError(msg) from e
    tables = {name: _read_table(name) for name in TABLES}
    ontology = GeneOntology(tables["terms"], tables["edges"], release=metadata["go_release"])
    annotations = tables["annotations"]
    for col in annotations.columns:
        annotations[col] = annotations[col].astype("category")
    return ontology, annotations, tables["aliases"], metadata

"""Build sclens's embedded human GO snapshot from Debian's Bioconductor packages.

Usage::

    python scripts/build_go_snapshot.py                 # apt-get download + dpkg-deb -x in a temp dir
    python scripts/build_go_snapshot.py --go-db GO.sqlite --org-db org.Hs.eg.sqlite

Sources: ``r-bioc-go.db`` (GO.db 3.16.0: GO release 2022-07-01, go-basic.obo) and
``r-bioc-org.hs.eg.db`` (org.Hs.eg.db 3.16.0: NCBI gene2go of 2022-09-12). No R is needed: the
packages hold SQLite files read with Python's ``sqlite3``. The script writes, into
``src/sclens/datasets/data``, gzip TSV tables (terms, is_a/part_of edges, direct annotations with
evidence codes, aliases of annotated genes) with a provenance header, and a JSON file with
metadata and the counts printed below; ``tests/datasets/test_go.py`` checks the loaded snapshot
against these counts. GO data are CC BY 4.0 (Gene Ontology Consortium).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from sclens.datasets._bioc import read_bioconductor_tables
from sclens.datasets._go import build_gene_sets
from sclens.datasets._snapshot import LICENCE, SNAPSHOT, write_snapshot

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["r-bioc-go.db", "r-bioc-org.hs.eg.db"]


def fetch_debian(workdir: Path) -> tuple[Path, Path]:
    """``apt-get download`` the two packages and unpack them; return the SQLite paths."""
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=workdir, check=True)
    for deb in sorted(workdir.glob("*.deb")):
        print(f"unpacking {deb.name}")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "x")], check=True)
    lib = workdir / "x" / "usr" / "lib" / "R" / "site-library"
    return lib / "GO.db" / "extdata" / "GO.sqlite", lib / "org.Hs.eg.db" / "extdata" / "org.Hs.eg.sqlite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go-db", type=Path, help="GO.sqlite (default: fetch r-bioc-go.db)")
    parser.add_argument("--org-db", type=Path, help="org.Hs.eg.sqlite (default: fetch r-bioc-org.hs.eg.db)")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "sclens" / "datasets" / "data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        go_db, org_db = (args.go_db, args.org_db) if args.go_db else fetch_debian(Path(tmp))
        ontology, annotations, aliases, meta = read_bioconductor_tables(go_db, org_db)
    annotations = annotations.sort_values(["go_id", "symbol", "evidence"], ignore_index=True)
    # keep aliases of annotated genes only (the snapshot's genes), unique pairs
    aliases = aliases[aliases["symbol"].isin(set(annotations["symbol"]))]
    aliases = aliases.sort_values(["alias", "symbol"], ignore_index=True)
    terms = ontology.terms.reset_index().sort_values("go_id", ignore_index=True)
    edges = ontology.edges.sort_values(["child", "parent", "relation"], ignore_index=True)

    counts = {
        "n_terms": {ns: int((terms["namespace"] == ns).sum()) for ns in ("BP", "MF", "CC")},
        "n_edges": {rel: int((edges["relation"] == rel).sum()) for rel in ("is_a", "part_of")},
        "n_annotations": len(annotations),
        "n_genes": int(annotations["symbol"].nunique()),
        "n_aliases": len(aliases),
    }
    defaults = {"min_size": 15, "max_size": 500, "evidence_exclude": ["ND"], "propagate": True}
    gene_sets = {}
    for ns in ("BP", "MF", "CC"):
        net = build_gene_sets(
            ontology,
            annotations,
            namespaces=(ns,),
            min_size=15,
            max_size=500,
            evidence_exclude=("ND",),
            propagate=True,
        )
        gene_sets[ns] = {
            "n_sets": int(net["source"].nunique()),
            "n_pairs": len(net),
            "n_genes": int(net["target"].nunique()),
        }
    meta.update(
        snapshot=SNAPSHOT,
        licence=LICENCE,
        built_from="Debian r-bioc-go.db 3.16.0-1 and r-bioc-org.hs.eg.db 3.16.0-1 (Bioconductor 3.16)",
        counts=counts,
        default_gene_sets={"params": defaults, **gene_sets},
    )
    write_snapshot(args.out, {"terms": terms, "edges": edges, "annotations": annotations, "aliases": aliases}, meta)

    print(f"GO release {meta['go_release']}, annotations {meta['annotation_date']} ({meta['organism']})")
    print("terms:", counts["n_terms"], "edges:", counts["n_edges"])
    print(f"direct annotations: {counts['n_annotations']}, annotated genes: {counts['n_genes']}")
    print(f"aliases of annotated genes: {counts['n_aliases']}")
    for ns, c in gene_sets.items():
        print(f"default gene sets {ns} (15-500 genes, no ND, propagated): {c}")
    for path in sorted(args.out.glob(f"{SNAPSHOT}*")):
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"wrote {shown}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

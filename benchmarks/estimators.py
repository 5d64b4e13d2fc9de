"""The dispersion estimators side by side: agreement with pyDESeq2, null, biology on real cells (issue 20).

Reads stored results only (no computation): the agreement with pyDESeq2 on 24 real-cell features
(``deseq2_agreement_variants``, ``benchmarks/annotate.py --deseq2 --dispersions ...``), the null and
planted features (``null_calibration``, ``benchmarks/null_calibration.py``), and per real dataset the
``benchmarks/biology.py`` run of the estimator on the counts (same scVI embedding, SAE and features as
the default's run; :data:`BIOLOGY` names them). One row per estimator and dataset: the medians of the
gene and term Jaccard indices against pyDESeq2, the null features annotated (of 240), and per cell type
the local features whose top-20 up-regulated genes hold a marker and whose first 10 term themes hold
the type's vocabulary ("k/n"; "-" for a type the dataset lacks).

Run: ``python benchmarks/estimators.py`` (after the runs named in :data:`BIOLOGY`); stores ``dispersion_estimators``.
"""

from __future__ import annotations

from _results import load, save

TYPES = ("B", "T", "NK", "monocyte", "macrophage")
#: the stored ``biology.py`` run (counts) of each estimator (``null_calibration.VARIANTS`` names) per dataset
BIOLOGY = {
    "moments, MAP weight (default)": {"immune559": "biology_themes", "pbmc4000": "biology_pbmc4000_themes"},
    "floored": {
        "immune559": "biology_floored_dispersions_themes",
        "pbmc4000": "biology_pbmc4000_floored_dispersions",
    },
    "floored, min_mu 0.5": {
        "immune559": "biology_dispersions_min_mu05",
        "pbmc4000": "biology_pbmc4000_dispersions_min_mu05",
    },
    "shrunk-moment floor, min_mu 0.5": {"immune559": "biology_dispersions_shrunk_floor_min_mu05"},
}


def count(cell: str) -> str:
    """``"7/16 (44%)"`` -> ``"7/16"``."""
    return cell.split(" ")[0]


def rows() -> list[dict]:
    agreement = {r["dispersions"]: r for r in load("deseq2_agreement_variants")["rows"]}
    null = {r["dispersions"]: r for r in load("null_calibration")["rows"]}
    out = []
    for estimator, runs in BIOLOGY.items():
        for dataset, name in runs.items():
            table = {r["cell type"]: r for r in load(name)["rows"] if r["expression"] == "counts"}
            row = {
                "estimator": estimator,
                "gene_jaccard": round(agreement[estimator]["jaccard_genes"], 3),
                "term_jaccard": round(agreement[estimator]["jaccard_terms"], 3),
                "null_annotated": int(null[estimator]["null_annotated"]),
                "dataset": dataset,
                "biology": name,
            }
            for t in TYPES:
                row[f"markers {t}"] = count(table[t]["markers top-20 DE"]) if t in table else "-"
            for t in TYPES:
                row[f"themes {t}"] = count(table[t]["right GO top-10 themes"]) if t in table else "-"
            out.append(row)
    return out


def main() -> None:
    table = rows()
    notes = (
        "gene / term Jaccard: medians over 24 immune559 features against pyDESeq2 (deseq2_agreement_variants); "
        "null_annotated: of 240 null features (null_calibration); markers / themes: local features of the type "
        "with a marker in the top-20 up genes / the type's GO vocabulary in the first 10 term themes "
        "(biology.py on the counts, run named in `biology`)"
    )
    save("dispersion_estimators", table, dataset="immune559 and pbmc4000 (stored results)", notes=notes)


if __name__ == "__main__":
    main()

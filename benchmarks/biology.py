"""Does the annotation find the right biology on real cells, at the defaults? (issue 20, item 4).

Data (``--dataset``): ``sl.datasets.immune559_counts()``, 559 real human immune cells with raw UMI counts
over 9,810 genes (celltypist's sample, MIT licence; the default), or ``sl.datasets.pbmc4000_counts()``,
4,000 real PBMCs over 16,778 genes (10x Genomics, CC BY 4.0; no macrophages); both offline. Cell
types are called from the documented markers in :data:`MARKERS` (log-normalised expression z-scored
per gene, mean per type, the best type with a mean z of at least 0.25, else ``"unassigned"``). An scVI
model (scvi-tools, seeded, ``n_latent=10``) gives the embedding; ``sl.tl.fit_sae(use_rep="X_scVI")``,
``sl.tl.feature_specificity(groupby="cell_type")`` and ``sl.tl.annotate_features`` run with their
defaults on GO biological process (the embedded snapshot). The annotation is run twice: on the
observed counts (``layer="counts"``) and on the scVI model's predicted expression (``model=``,
the paper's variant); ``sl.tl.annotation_null`` (defaults: 3 permutations of the cells and of the
gene labels) runs on both.

Per expression source and cell type (local features whose ``top_group`` is the type):

* ``local``: number of local features;
* ``annotated``: local features with at least one kept term;
* ``right GO``: share whose top-10 kept terms contain a term of the type's expected vocabulary,
  every descendant (``is_a`` / ``part_of``) of the roots in :data:`VOCABULARY`;
* ``right GO top-10 themes``: the same for the representatives of the first 10 term themes
  (``sl.get.feature_terms(themes=True)``, what ``sl.pl.enrichment`` draws): nested terms of one theme
  count once, by its most specific term;
* ``vocabulary kept``: share with a term of the vocabulary among all their kept terms, at any rank:
  what any reordering of the kept terms (e.g. ``go_algorithm``) could at most bring into the top 10;
* ``markers``: share whose top-20 up-regulated genes contain one of the type's markers;
* ``FDR<0.05``: share with ``annotation_fdr < 0.05`` in the null run;
* ``median vocabulary rank``: median over the local features of the rank (1 = first) of the first
  kept term of the type's vocabulary ("-" when most keep none);
* ``type vs rest rank``: the same rank for the whole type against all other cells
  (``sl.tl.contrast``, same defaults): the ceiling of what a feature of that type can show on
  these cells.

Below the table: features annotated under each null (mean over permutations) out of all
features; the target is at most 5 %.

Run: ``OMP_NUM_THREADS=1 python benchmarks/biology.py --label after`` (writes
``benchmarks/results/biology_<label>.md``; the scVI model is cached under ``--cache``). ``--compare`` runs
several settings on the same SAE, e.g. ``--compare '[{}, {"go_algorithm": "elim"}]' --variants counts``.
``--dispersion-variant NAME`` replaces the engine's dispersion estimator by one of
``null_calibration.VARIANTS`` (as ``annotate.py --deseq2 --dispersions`` and ``null_calibration.py`` do),
so that an estimator's agreement with pyDESeq2, its null and its biology are measured alike.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sclens as sl
from sclens._readers import theme_rows

RESULTS = Path(__file__).parent / "results"

#: Marker genes per cell type. Sources: Hao et al. 2021 (Cell 184:3573, Azimuth human PBMC level-1
#: markers: B = MS4A1, CD79A, BANK1; CD14 monocyte = S100A9, CTSS, S100A8, LYZ, VCAN, CD14;
#: NK = NKG7, KLRD1, GNLY, PRF1; T = CD3E, CD3D, TRAC, CD2) and Travaglini et al. 2020 (Nature 587:619,
#: lung macrophages = C1QA, C1QB, C1QC, APOE, MARCO). Genes not measured are skipped.
MARKERS = {
    "B": ["MS4A1", "CD79A", "CD79B", "BANK1"],
    "T": ["CD3E", "CD3D", "TRAC", "CD2"],
    "NK": ["GNLY", "NKG7", "KLRD1", "PRF1"],
    "monocyte": ["LYZ", "CD14", "S100A8", "S100A9", "VCAN"],
    "macrophage": ["C1QA", "C1QB", "C1QC", "APOE", "MARCO"],
}
#: Expected GO biological-process vocabulary per type: these terms and all their descendants.
VOCABULARY = {
    "B": {"GO:0042113": "B cell activation", "GO:0050853": "B cell receptor signaling pathway"},
    "T": {"GO:0042110": "T cell activation"},
    "NK": {"GO:0002228": "natural killer cell mediated immunity", "GO:0030101": "natural killer cell activation"},
    "monocyte": {"GO:0002274": "myeloid leukocyte activation"},
    "macrophage": {"GO:0006629": "lipid metabolic process", "GO:0002274": "myeloid leukocyte activation"},
}
N_TERMS, N_GENES, MIN_Z = 10, 20, 0.25
#: The real datasets: loader, how the report names it, the cell types called on it (keys of MARKERS).
DATASETS = {
    "immune559": (sl.datasets.immune559_counts, "559 immune cells (`sl.datasets.immune559_counts`)", tuple(MARKERS)),
    "pbmc4000": (
        sl.datasets.pbmc4000_counts,
        "4,000 PBMCs (`sl.datasets.pbmc4000_counts`)",
        ("B", "T", "NK", "monocyte"),
    ),
}


def call_cell_types(adata, types: tuple[str, ...] = tuple(MARKERS)) -> pd.Series:
    """Cell type of each cell among ``types`` from :data:`MARKERS` (mean z-score of log-normalised markers)."""
    import scanpy as sc

    x = adata.copy()
    x.X = x.layers["counts"].copy()
    sc.pp.normalize_total(x, target_sum=1e4)
    sc.pp.log1p(x)
    scores = {}
    for cell_type in types:
        sub = x[:, [g for g in MARKERS[cell_type] if g in x.var_names]].X.toarray()
        z = (sub - sub.mean(0)) / np.maximum(sub.std(0), 1e-8)
        scores[cell_type] = z.mean(1)
    scores = pd.DataFrame(scores, index=adata.obs_names)
    best = scores.idxmax(axis=1).where(scores.max(axis=1) >= MIN_Z, "unassigned")
    return best.astype("category")


def scvi_model(adata, *, n_epochs: int, cache: Path | None, seed: int = 0, name: str = "immune559"):
    """A seeded scVI model on ``layers['counts']`` (loaded from ``cache`` when it holds one)."""
    import scvi

    scvi.settings.seed = seed
    path = None if cache is None else cache / f"{name}_scvi_e{n_epochs}_s{seed}"
    scvi.model.SCVI.setup_anndata(adata, layer="counts")
    if path is not None and (path / "model.pt").is_file():
        return scvi.model.SCVI.load(str(path), adata=adata, accelerator="cpu")
    model = scvi.model.SCVI(adata, n_latent=10)
    model.train(max_epochs=n_epochs, accelerator="cpu", devices=1, enable_progress_bar=False)
    if path is not None:
        model.save(str(path), overwrite=True)
    return model


def expected_terms() -> dict[str, set[str]]:
    """Every descendant (and the root itself) of each type's vocabulary roots."""
    onto = sl.datasets.go_ontology()
    out = {}
    for cell_type, roots in VOCABULARY.items():
        out[cell_type] = set().union(*(onto.descendants(t, include_self=True) for t in roots))
    return out


def biology_table(
    adata, *, annotation_key: str, null_key: str | None, vocab: dict[str, set[str]], ceil: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per cell type: local features and the shares carrying the right biology."""
    feats = adata.uns["sae"]["features"]
    ann = adata.uns[annotation_key]
    res, top = ann["results"], ann["top_genes"]
    fdr = (
        adata.uns["sae"][null_key]["table"].set_index("feature")["annotation_fdr"]
        if null_key is not None and null_key in adata.uns["sae"]
        else None
    )
    rows = []
    for cell_type in cell_types(adata):
        local = [int(f) for f in feats.index[(feats["kind"] == "local") & (feats["top_group"] == cell_type)]]
        n = len(local)
        annotated = right = right_themes = anywhere = markers = passing = 0
        ranks = []
        for f in local:
            rows_f = res[res["feature"] == f]
            kept = rows_f["term"].to_numpy()
            themes = theme_rows(rows_f)["term"].head(N_TERMS)  # as sl.get.feature_terms(themes=True)
            hit = np.flatnonzero(np.isin(kept, list(vocab[cell_type])))
            ranks.append(hit[0] + 1 if hit.size else np.inf)
            terms = kept[:N_TERMS]
            genes = top.loc[top["feature"] == f, "gene"].head(N_GENES)
            annotated += len(terms) > 0
            right += bool(set(terms) & vocab[cell_type])
            right_themes += bool(set(themes) & vocab[cell_type])
            anywhere += bool(hit.size)
            markers += bool(set(genes) & set(MARKERS[cell_type]))
            passing += fdr is not None and f in fdr.index and bool(fdr[f] < 0.05)
        share = functools.partial(_share, n=n)
        rows.append({
            "cell type": cell_type, "cells": int((adata.obs["cell_type"] == cell_type).sum()), "local": n,
            "annotated": share(annotated), "right GO top-10": share(right),
            "right GO top-10 themes": share(right_themes), "vocabulary kept": share(anywhere),
            "markers top-20 DE": share(markers), "FDR<0.05": share(passing) if fdr is not None else "n/a",
            "median vocabulary rank": _rank(np.median(ranks)) if ranks else "-",
            **({"type vs rest rank": ceil[cell_type]} if ceil is not None else {}),
        })  # fmt: skip
    return pd.DataFrame(rows)


def ceiling(adata, *, gene_sets, vocab: dict[str, set[str]], **kw) -> dict[str, str]:
    """The best a feature of each type can do: the whole type against all other cells, same engine and rule.

    ``sl.tl.contrast(groupby="cell_type")`` with the annotation's defaults; reported as the rank (1 = first)
    of the first kept term of the type's vocabulary, "-" when none is kept.
    """
    out = {}
    for cell_type in cell_types(adata):
        res = sl.tl.contrast(adata, groupby="cell_type", groups=cell_type, gene_sets=gene_sets, copy=True, **kw)
        terms = res.uns["contrast"]["results"]["term"].reset_index(drop=True)
        hit = np.flatnonzero(terms.isin(vocab[cell_type]).to_numpy())
        out[cell_type] = str(hit[0] + 1) if hit.size else "-"
    return out


def cell_types(adata) -> list[str]:
    """The types of :data:`MARKERS` called on ``adata`` (in that order)."""
    return [t for t in MARKERS if t in set(adata.obs["cell_type"])]


def _rank(r: float) -> str:
    return "-" if not np.isfinite(r) else f"{r:g}"


def _share(k: int, *, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def null_line(adata, null_key: str) -> str:
    """Features annotated under each null, out of all features."""
    if null_key not in adata.uns["sae"]:
        return "null: not run"
    p = adata.uns["sae"][null_key]["params"]
    n = int(p["n_features"])
    parts = [f"observed {int(p['n_annotated'])}/{n}"]
    for null in np.atleast_1d(p["nulls"]):
        k = float(p[f"null_{null}_annotated"])
        parts.append(f"null {null} {k:.1f}/{n} ({k / n:.1%})")
    return "; ".join(parts)


def prepare(*, n_epochs: int, cache: Path | None, dataset: str = "immune559"):
    """The cells of ``dataset`` with their cell types, scVI embedding, SAE and feature specificity; the scVI model."""
    load, _, types = DATASETS[dataset]
    adata = load()
    adata.obs["cell_type"] = call_cell_types(adata, types)
    model = scvi_model(adata, n_epochs=n_epochs, cache=cache, name=dataset)
    adata.obsm["X_scVI"] = model.get_latent_representation()
    sl.tl.fit_sae(adata, use_rep="X_scVI")
    sl.tl.feature_specificity(adata, groupby="cell_type")
    return adata, model


def annotate(
    adata,
    model,
    *,
    settings: dict,
    variants: tuple[str, ...],
    n_permutations: int,
    nulls: tuple[str, ...],
    suffix: str = "",
) -> dict:
    """Annotate with ``settings`` (on top of the defaults), run the nulls and the ceiling, per expression variant.

    Returns ``{variant: (table, null line, seconds)}``; results are stored under keys ending in ``suffix``.
    """
    go = sl.datasets.go_gene_sets("human", namespaces=("BP",))
    vocab = expected_terms()
    out = {}
    for variant in variants:
        key, null_key = f"sae_go_{variant}{suffix}", f"annotation_null_{variant}{suffix}"
        kw = {"layer": "counts"} if variant == "counts" else {"model": model}
        t0 = time.perf_counter()
        sl.tl.annotate_features(adata, gene_sets=go, key_added=key, **kw, **settings)
        seconds = time.perf_counter() - t0
        try:
            sl.tl.annotation_null(
                adata, gene_sets=go, annotation_key=key, key_added=null_key, n_permutations=n_permutations,
                nulls=nulls, model=kw.get("model"),
            )  # fmt: skip
            line = null_line(adata, null_key)
        except Exception as err:  # the "before" engine fails on the model path: report it
            line = f"null failed: {type(err).__name__}: {' '.join(str(err).split())[:160]}"
            null_key = None
        ceil = ceiling(adata, gene_sets=go, vocab=vocab, **kw, **settings)
        table = biology_table(adata, annotation_key=key, null_key=null_key, vocab=vocab, ceil=ceil)
        out[variant] = (table, line, seconds)
    return out


def run(
    *,
    n_epochs: int = 200,
    n_permutations: int = 3,
    nulls: tuple[str, ...] = ("cells", "genes"),
    cache: Path | None = None,
    variants: tuple[str, ...] = ("counts", "model"),
    settings: dict | None = None,
    dataset: str = "immune559",
):
    """Run the benchmark; return ``{variant: (table, null line, seconds)}`` and the AnnData.

    ``settings``: arguments passed to ``annotate_features`` and ``contrast`` on top of their defaults
    (e.g. an earlier engine's ``{"independent_filter": True, "max_de_genes": None}``).
    """
    adata, model = prepare(n_epochs=n_epochs, cache=cache, dataset=dataset)
    out = annotate(
        adata, model, settings=dict(settings or {}), variants=variants, n_permutations=n_permutations, nulls=nulls
    )
    return out, adata


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=200, help="scVI training epochs")
    ap.add_argument("--permutations", type=int, default=3, help="permutations per null")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "sclens-bench"), help="scVI model cache")
    ap.add_argument("--settings", default="{}", help="JSON of annotate_features arguments beyond the defaults")
    ap.add_argument(
        "--compare", default=None,
        help="JSON list of settings, each run on the same SAE (a `settings` column in the table); replaces --settings",
    )  # fmt: skip
    ap.add_argument("--variants", default="counts,model", help="expression variants: counts, model (comma-separated)")
    ap.add_argument("--dataset", default="immune559", choices=list(DATASETS), help="the real cells")
    ap.add_argument("--label", default="after", help="name of the stored table: results/biology_<label>.md")
    ap.add_argument("--dispersion-variant", default=None, help="a dispersion estimator of null_calibration.VARIANTS")
    args = ap.parse_args()
    t0 = time.perf_counter()
    compare = json.loads(args.compare) if args.compare is not None else [json.loads(args.settings)]
    if args.dispersion_variant is not None:  # every annotation and null of this run uses that estimator
        from null_calibration import patch

        from sclens.tl._annotation import _engines

        _engines.nb_dispersions, dispersions = patch(args.dispersion_variant)
        compare = [{**st, "dispersions": dispersions} for st in compare]
    variants = tuple(args.variants.split(","))
    adata, model = prepare(n_epochs=args.epochs, cache=Path(args.cache), dataset=args.dataset)
    outs = [
        annotate(adata, model, settings=st, variants=variants, n_permutations=args.permutations,
                 nulls=("cells", "genes"), suffix=f"_{i}" if len(compare) > 1 else "")
        for i, st in enumerate(compare)
    ]  # fmt: skip
    feats = adata.uns["sae"]["features"]
    lines = [
        f"# benchmarks/biology.py ({args.label})",
        "",
        f"{DATASETS[args.dataset][1]}, scVI {args.epochs} epochs (seed 0), "
        f"`fit_sae` defaults: {len(feats)} features, {int((feats['kind'] == 'local').sum())} local, "
        f"{int((feats['kind'] == 'global').sum())} global; cell types: "
        + ", ".join(f"{k} {v}" for k, v in adata.obs["cell_type"].value_counts().items())
        + f"; {args.permutations} permutation(s) per null; total {time.perf_counter() - t0:.0f} s"
        + (f"; annotation settings {compare[0]}" if len(compare) == 1 and compare[0] else "")
        + (
            f"; dispersion estimator: {args.dispersion_variant!r} (null_calibration.VARIANTS)."
            if args.dispersion_variant
            else "."
        ),
    ]
    rows, nulls = [], {}
    for st, out in zip(compare, outs, strict=True):
        name = _settings_name(st)
        for variant, (table, line, seconds) in out.items():
            expr = (
                "observed counts (`layer='counts'`)" if variant == "counts" else "scVI predicted expression (`model=`)"
            )
            title = f"## {expr}" + (f", {name}" if len(compare) > 1 else "") + f": annotate_features {seconds:.1f} s"
            lines += ["", title, "", table.to_markdown(index=False), "", line]
            extra = {"settings": name} if len(compare) > 1 else {}
            rows += [{**extra, "expression": variant, **r} for r in table.to_dict("records")]
            nulls[f"{variant} {name}" if len(compare) > 1 else variant] = line
    text = "\n".join(lines) + "\n"
    from _results import save  # benchmarks/ is on sys.path when run as a script

    save(f"biology_{args.label}", rows, dataset=lines[2], params={**vars(args), "nulls": nulls})
    (RESULTS / f"biology_{args.label}.md").write_text(text)  # the readable report, with its null lines


def _settings_name(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


if __name__ == "__main__":
    main()

"""Which SAE should a user train? Every registered architecture and the PCA / ICA baselines, one scorecard each.

Two datasets (issue 21, item 7):

* ``immune559``: 559 real immune cells, raw counts over 9,810 genes (``sl.datasets.immune559_counts``).
  Cell types are called from markers (``benchmarks/biology.py::call_cell_types``: B, T, NK, monocyte,
  macrophage, unassigned); the embedding is scanpy's PCA (30 components) of log-normalised counts
  (``normalize_total`` 1e4, ``log1p``, 2,000 highly variable genes). Absorption along lymphoid
  (B, T, NK) / myeloid (monocyte, macrophage); annotation with GO biological process on the counts.
* ``sim``: ``sl.sim.simulate`` at the simulation tutorial's scale (3,000 cells, 500 genes, 20 programs,
  a per-cell mask of density 0.1, Poisson counts of library size 2,000; the cells without counts, those
  where no program is on, removed), embedded by ``sl.sim.fit_autoencoder`` (20 dimensions). The label
  is each cell's strongest program (``top_program``: argmax of X''); there is no label hierarchy, so
  no absorption. The gene sets are the true programs (the columns of M), so "annotated" means
  "enriched for a true program". Ground truth: mean best |r| of a feature with each X'' variable
  (``sl.sim.recovery``) and the recall of M by the features' pseudo-connectivity at the 70th
  percentile against a gene-shuffled M (``sl.sim.connectivity_recovery``).

Each setting is fitted with ``sl.tl.fit_sae`` at its defaults (width ``min(16 * dims, cells / 3)``,
``k=32``, ``l1_weight=1e-3``, training to convergence, seed 0) unless the setting names a ``k``
(``topk:8``); PCA / ICA come from ``sl.tl.baseline_features`` (one signed component = two features).
All are scored by ``sl.tl.evaluate`` (stability over ``--n-seeds`` refits, 1- and 4-feature probes on
a held-out 30 % of cells, absorption) and by ``sl.tl.annotate_features`` + ``sl.tl.annotation_null``
(``--permutations`` per null; the random-direction null: random unit directions of the embedding
at each feature's frequency). ``null_corrected`` is the annotated share minus the null's.

Run: ``OMP_NUM_THREADS=1 python benchmarks/evaluate.py`` (writes ``benchmarks/results/evaluate_immune559``
and ``evaluate_sim``, ``.json`` / ``.md``). ``--data pbmc --configs topk:64:8 ...``
runs the earlier width / k table on the PBMC quick-start data (``benchmarks/results/evaluate_pbmc.md``).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _results import RESULTS, load, save

import sclens as sl

SETTINGS = ("topk", "batchtopk", "matryoshka_batchtopk", "jumprelu", "relu", "vanilla", "topk:8", "pca", "ica")
IMMUNE_COARSE = {"B": "lymphoid", "T": "lymphoid", "NK": "lymphoid", "monocyte": "myeloid",
                 "macrophage": "myeloid", "unassigned": "unassigned"}  # fmt: skip
PBMC_COARSE = {
    "CD4+/CD25 T Reg": "CD4 T", "CD4+/CD45RA+/CD25- Naive T": "CD4 T", "CD4+/CD45RO+ Memory": "CD4 T",
    "CD8+ Cytotoxic T": "CD8 T", "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T",
    "CD14+ Monocyte": "myeloid", "Dendritic": "myeloid",
    "CD56+ NK": "NK", "CD19+ B": "B", "CD34+": "CD34+",
}  # fmt: skip
PBMC_COLUMNS = ["method", "n_features", "n_live", "fvu", "share_reproduced", "median_stability", "probing_k1",
                "probing_k2", "baseline_k2", "baseline_k2_method", "probing_k4", "probing_k8", "mean_absorption",
                "bulk_labels_median_auroc", "seconds"]  # fmt: skip
PBMC_OUT = Path(__file__).parent / "results" / "evaluate_pbmc.md"


@dataclass
class Dataset:
    """One dataset of the table: an AnnData with an embedding, a label and gene sets."""

    name: str
    adata: Any
    use_rep: str
    groupby: str
    gene_sets: dict[str, list[str]]
    coarse: dict[str, str] | None = None
    truth: bool = False  # simulated: score recovery of X'' and M
    fit_kwargs: dict[str, Any] = field(default_factory=dict)


def immune559() -> Dataset:
    """559 immune cells, marker-called cell types, PCA of log-normalised counts, GO biological process."""
    import scanpy as sc
    from biology import call_cell_types

    adata = sl.datasets.immune559_counts()
    adata.obs["cell_type"] = call_cell_types(adata)
    norm = adata.copy()
    norm.X = norm.layers["counts"].copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    sc.pp.highly_variable_genes(norm, n_top_genes=2000)
    sc.pp.pca(norm, n_comps=30, mask_var="highly_variable", random_state=0)
    adata.obsm["X_pca"] = norm.obsm["X_pca"]
    go = sl.datasets.go_gene_sets("human", namespaces=("BP",))
    return Dataset("immune559", adata, "X_pca", "cell_type", go, coarse=IMMUNE_COARSE)


def simulation(*, n_cells: int = 3000, n_genes: int = 500, ae_epochs: int = 30, **fit_kwargs: Any) -> Dataset:
    """The simulation tutorial's data, its autoencoder embedding, the strongest program as label, M as gene sets."""
    adata = sl.sim.simulate(preset="large", n_cells=n_cells, n_genes=n_genes, n_programs=20, n_cell_types=0,
                            mask_density=0.1, likelihood="poisson", library_size=2000, random_state=0)  # fmt: skip
    adata = adata[np.asarray(adata.layers["counts"].sum(axis=1)).ravel() > 0].copy()  # no program on: no counts
    sl.sim.fit_autoencoder(adata, n_latent=20, hidden=(128,), n_epochs=ae_epochs, random_state=0)
    x2 = np.asarray(adata.obsm["X_celltype_altered"])
    adata.obs["top_program"] = pd.Categorical(np.char.add("program ", x2.argmax(axis=1).astype(str)))
    m = np.asarray(adata.varm["connectivity"]) != 0
    sets = {f"program {i}": adata.var_names[m[:, i]].tolist() for i in range(m.shape[1])}
    return Dataset("sim", adata, "X_ae", "top_program", sets, truth=True, fit_kwargs=fit_kwargs)


def score(data: Dataset, setting: str, *, n_seeds: int, n_permutations: int) -> dict[str, Any]:
    """Fit one setting on ``data`` and return its row of the table."""
    adata = data.adata
    arch, _, k = setting.partition(":")
    key = f"{arch}_baseline" if arch in ("pca", "ica") else setting.replace(":", "_k")  # obsm["X_pca"] is scanpy's
    t0 = time.perf_counter()
    if arch in ("pca", "ica"):
        sl.tl.baseline_features(adata, use_rep=data.use_rep, method=arch, key_added=key)
    else:
        kw = {"k": int(k)} if k else {}
        sl.tl.fit_sae(adata, use_rep=data.use_rep, architecture=arch, key_added=key, n_jobs=1, **kw,
                      **data.fit_kwargs)  # fmt: skip
    sl.tl.annotate_features(adata, gene_sets=data.gene_sets, sae_key=key, layer="counts", key_added=f"{key}_go",
                            n_jobs=1)  # fmt: skip
    sl.tl.annotation_null(adata, gene_sets=data.gene_sets, sae_key=key, annotation_key=f"{key}_go",
                          nulls=("directions",), n_permutations=n_permutations)  # fmt: skip
    sl.tl.evaluate(adata, groupby=data.groupby, sae_key=key, coarse=data.coarse, n_seeds=n_seeds, k=(1, 4),
                   fit_kwargs={"n_jobs": 1, **data.fit_kwargs})  # fmt: skip
    card = adata.uns[key]["evaluation"]["scorecard"].set_index("metric")
    value, baseline = card["value"], card["baseline"]
    run = adata.uns[key]
    null = float(baseline.get("annotated_fraction", np.nan))
    row: dict[str, Any] = {
        "dataset": data.name, "method": setting, "n_features": len(run["features"]),
        "k": int(run["params"]["k"]) if arch in ("topk", "batchtopk", "matryoshka_batchtopk") else "-",
        "fvu": value["fvu"], "l0": value["l0"], "dead": value["dead_fraction"],
        "reproduced": value.get("share_reproduced", np.nan), "stability": value.get("median_stability", np.nan),
        "probe_k1": value["probing_k1"], "probe_k4": value["probing_k4"],
        "embedding_k4": baseline["probing_k4"], "absorption": value.get("mean_absorption", np.nan),
        "annotated": value["annotated_fraction"], "null": null, "null_corrected": value["annotated_fraction"] - null,
    }  # fmt: skip
    if data.truth:
        rec = sl.sim.recovery(adata, sae_key=key, targets=["X''"], baselines=(), threshold=0.9).iloc[0]
        conn = sl.sim.connectivity_recovery(adata, sae_key=key, percentiles=(70,)).iloc[0]
        row.update(x2_best_r=float(rec["mean_best_r"]), x2_recovered=float(rec["frac_recovered"]),
                   m_recall=float(conn["recall"]), m_recall_shuffled=float(conn["recall_shuffled"]))  # fmt: skip
    row["seconds"] = round(time.perf_counter() - t0, 1)
    for name in (key, f"{key}_go"):  # keep the AnnData light for the next setting
        adata.uns.pop(name, None)
    adata.obsm.pop(f"X_{key}", None)
    return row


def run(
    data: Dataset, settings: list[str], *, n_seeds: int, n_permutations: int, store=None, rows: list | None = None
) -> list[dict[str, Any]]:
    """One row per setting, after ``rows`` already measured (skipped); ``store(rows)`` after each."""
    rows = list(rows or [])
    done = {r["method"] for r in rows}
    for setting in [s for s in settings if s not in done]:
        rows.append(score(data, setting, n_seeds=n_seeds, n_permutations=n_permutations))
        print(f"{data.name} {setting}: {rows[-1]['seconds']:.0f} s", flush=True)
        if store is not None:
            store(rows)
    return rows


def pbmc(args: argparse.Namespace) -> None:
    """The width / k table on the PBMC quick-start data (700 cells, scanpy's 50 PCs, ``bulk_labels``)."""
    adata = sl.datasets.pbmc68k_counts()
    keys, seconds = [], {}
    for spec in args.configs:
        arch, width, k = spec.split(":")
        key = f"{arch}_{width}_k{k}"
        t0 = time.perf_counter()
        sl.tl.fit_sae(adata, use_rep="X_pca", architecture=arch, n_features=int(width), k=int(k), key_added=key,
                      n_jobs=1)  # fmt: skip
        sl.tl.evaluate(adata, groupby="bulk_labels", sae_key=key, coarse=PBMC_COARSE, n_seeds=args.n_seeds,
                       k=(1, 2, 4, 8), fit_kwargs={"n_jobs": 1})  # fmt: skip
        seconds[key] = time.perf_counter() - t0
        keys.append(key)
        print(f"{key}: {seconds[key]:.0f} s", flush=True)
    for method in ("pca", "ica"):
        key = f"{method}_baseline"
        t0 = time.perf_counter()
        sl.tl.baseline_features(adata, use_rep="X_pca", method=method, key_added=key)
        sl.tl.evaluate(adata, groupby="bulk_labels", sae_key=key, coarse=PBMC_COARSE, n_seeds=0, k=(1, 2, 4, 8))
        seconds[key] = time.perf_counter() - t0
        keys.append(key)
    table = sl.tl.compare_runs(adata, sae_keys=keys)
    for k in table.index:  # the best baseline probe at k = 2 (embedding dimensions, PCA or ICA scores)
        card = adata.uns[k]["evaluation"]["scorecard"].set_index("metric")
        table.loc[k, "baseline_k2"] = card.loc["probing_k2", "baseline"]
        table.loc[k, "baseline_k2_method"] = card.loc["probing_k2", "baseline_method"]
    table["seconds"] = [seconds[k] for k in table.index]
    text = table.reindex(columns=PBMC_COLUMNS).to_markdown(floatfmt=".3f")
    print(text)
    PBMC_OUT.write_text(
        "# Scorecard on PBMC (700 cells, 50 PCs, `bulk_labels`)\n\n"
        f"`OMP_NUM_THREADS=1 python benchmarks/evaluate.py --data pbmc --n-seeds {args.n_seeds} --configs "
        f"{' '.join(args.configs)}` (shared 2-core machine, loaded; seconds include the refits).\n"
        "Probing: held-out 30 % of cells (no donors in this data); `probing_k*` = SAE balanced accuracy.\n\n"
        + text + "\n"
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["immune559", "sim"], choices=["immune559", "sim", "pbmc"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="architecture[:k], pca or ica")
    parser.add_argument("--n-seeds", type=int, default=1, help="refits for the stability score")
    parser.add_argument("--permutations", type=int, default=1, help="permutations per annotation null")
    parser.add_argument("--resume", action="store_true", help="keep the stored rows, run the missing settings")
    parser.add_argument("--configs", nargs="+", default=["topk:32:4", "topk:64:8", "topk:256:16",
                                                         "batchtopk:256:16", "topk:256:4"],
                        help="--data pbmc only: architecture:width:k")  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("sclens").setLevel(logging.ERROR)
    if "pbmc" in args.data:
        pbmc(args)
    loaders = {"immune559": immune559, "sim": simulation}
    datasets = [loaders[name]() for name in args.data if name in loaders]
    if not datasets:
        return
    described = {
        "immune559": "sl.datasets.immune559_counts(): 559 cells x 9,810 genes, PCA (30) of log-normalised counts, "
        "marker-called cell types, GO BP",
        "sim": "sl.sim.simulate(large preset, 3,000 cells, 500 genes, 20 programs, per-cell mask 0.1, Poisson "
        "counts, library size 2,000), 20-dim autoencoder, label = strongest program, gene sets = columns of M",
    }
    for data in datasets:  # one stored table per dataset, rewritten after every setting
        t0 = time.perf_counter()

        def store(rows, data=data, t0=t0):
            notes = f"{len(rows)} of {len(args.settings)} settings, {time.perf_counter() - t0:.0f} s"
            save(f"evaluate_{data.name}", rows, dataset=described[data.name], params=vars(args), notes=notes)

        stored = RESULTS / f"evaluate_{data.name}.json"
        rows = load(f"evaluate_{data.name}")["rows"] if args.resume and stored.is_file() else None
        run(data, args.settings, n_seeds=args.n_seeds, n_permutations=args.permutations, store=store, rows=rows)


if __name__ == "__main__":
    main()

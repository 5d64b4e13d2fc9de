"""The scorecard of ``sl.tl.evaluate`` on real cells, for a few SAE settings and the PCA / ICA baselines.

PBMC quick-start data (``sl.datasets.pbmc68k_counts``: 700 cells, scanpy's 50 PCs as the embedding,
``bulk_labels`` as cell types). Each SAE setting is fitted with ``sl.tl.fit_sae`` (training to
convergence, seed 0) and scored by ``sl.tl.evaluate``: seed stability (``--n-seeds`` refits, Hungarian
matching on decoder |cosine|), k-sparse probing of ``bulk_labels`` on a held-out 30 % of cells
against the embedding dimensions / PCA / ICA, absorption along a coarse hierarchy of the labels
(CD4 T, CD8 T, myeloid) and alignment. PCA and ICA "features" (``sl.tl.baseline_features``) are scored
the same way (no refits). One row per run, from ``sl.tl.compare_runs``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/evaluate.py [--n-seeds 2] [--configs topk:64:8 topk:256:16]``
Writes ``benchmarks/results/evaluate_pbmc.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import sclens as sl

COARSE = {
    "CD4+/CD25 T Reg": "CD4 T", "CD4+/CD45RA+/CD25- Naive T": "CD4 T", "CD4+/CD45RO+ Memory": "CD4 T",
    "CD8+ Cytotoxic T": "CD8 T", "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T",
    "CD14+ Monocyte": "myeloid", "Dendritic": "myeloid",
    "CD56+ NK": "NK", "CD19+ B": "B", "CD34+": "CD34+",
}  # fmt: skip
COLUMNS = ["method", "n_features", "n_live", "fvu", "share_reproduced", "median_stability", "probing_k1",
           "probing_k2", "baseline_k2", "baseline_k2_method", "probing_k4", "probing_k8", "mean_absorption",
           "bulk_labels_median_auroc", "seconds"]  # fmt: skip
OUT = Path(__file__).parent / "results" / "evaluate_pbmc.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--configs", nargs="+", default=["topk:32:4", "topk:64:8", "topk:256:16", "batchtopk:256:16", "topk:256:4"]
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("sclens").setLevel(logging.ERROR)
    adata = sl.datasets.pbmc68k_counts()
    keys, seconds = [], {}
    for spec in args.configs:
        arch, width, k = spec.split(":")
        key = f"{arch}_{width}_k{k}"
        t0 = time.perf_counter()
        sl.tl.fit_sae(adata, use_rep="X_pca", architecture=arch, n_features=int(width), k=int(k), key_added=key,
                      n_jobs=1)  # fmt: skip
        sl.tl.evaluate(adata, groupby="bulk_labels", sae_key=key, coarse=COARSE, n_seeds=args.n_seeds,
                       k=(1, 2, 4, 8), fit_kwargs={"n_jobs": 1})  # fmt: skip
        seconds[key] = time.perf_counter() - t0
        keys.append(key)
        print(f"{key}: {seconds[key]:.0f} s", flush=True)
    for method in ("pca", "ica"):
        key = f"{method}_baseline"
        t0 = time.perf_counter()
        sl.tl.baseline_features(adata, use_rep="X_pca", method=method, key_added=key)
        sl.tl.evaluate(adata, groupby="bulk_labels", sae_key=key, coarse=COARSE, n_seeds=0, k=(1, 2, 4, 8))
        seconds[key] = time.perf_counter() - t0
        keys.append(key)
    table = sl.tl.compare_runs(adata, sae_keys=keys)
    for k in table.index:  # the best baseline probe at k = 2 (embedding dimensions, PCA or ICA scores)
        card = adata.uns[k]["evaluation"]["scorecard"].set_index("metric")
        table.loc[k, "baseline_k2"] = card.loc["probing_k2", "baseline"]
        table.loc[k, "baseline_k2_method"] = card.loc["probing_k2", "baseline_method"]
    table["seconds"] = [seconds[k] for k in table.index]
    table = table.reindex(columns=COLUMNS)
    text = table.to_markdown(floatfmt=".3f")
    print(text)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        "# Scorecard on PBMC (700 cells, 50 PCs, `bulk_labels`)\n\n"
        f"`OMP_NUM_THREADS=1 python benchmarks/evaluate.py --n-seeds {args.n_seeds} --configs "
        f"{' '.join(args.configs)}` (shared 2-core machine, loaded; seconds include the refits).\n"
        "Probing: held-out 30 % of cells (no donors in this data); `probing_k*` = SAE balanced accuracy.\n\n"
        + text + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""Measurements of the steering tools on real PBMCs and on the simulation with known batches.

1. ``sl.tl.steer_towards`` on ``sl.datasets.pbmc68k_counts()`` (scVI, 10 latent dims; TopK SAE, 256
   features): source -> target pairs of ``bulk_labels``, with frac_closer, distances, the target's
   markers in the DE of steered vs original cells.
2. ``sl.tl.batch_steer`` on ``sl.sim.simulate`` (3 batches, 6 cell types): clamp the features whose
   variation within cell types is explained by batch (eta^2 >= threshold) and score batch entropy,
   kNN label purity and cell-type ASW before / after, for several thresholds and a control (as many
   features that are not batch-driven).

Run: ``python benchmarks/steering.py [--epochs 40] [--skip-pbmc]``. CPU only; scVI training dominates.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _results import save

import sclens as sl

PAIRS = [
    ("CD14+ Monocyte", "CD56+ NK"),
    ("CD4+/CD45RA+/CD25- Naive T", "CD8+ Cytotoxic T"),
    ("CD4+/CD45RO+ Memory", "CD8+ Cytotoxic T"),
    ("CD19+ B", "CD14+ Monocyte"),
]
COLUMNS = [
    "frac_closer",
    "distance_before",
    "distance_after",
    "markers_up",
    "markers_log2fc",
    "others_log2fc",
    "de_correlation",
]


def pbmc(epochs: int) -> pd.DataFrame:
    import scvi

    scvi.settings.seed = 0
    adata = sl.datasets.pbmc68k_counts()
    scvi.model.SCVI.setup_anndata(adata, layer="counts")
    model = scvi.model.SCVI(adata, n_latent=10)
    model.train(max_epochs=epochs, batch_size=128, early_stopping=False, enable_progress_bar=False, accelerator="cpu")
    adata.obsm["X_scVI"] = model.get_latent_representation()
    sl.tl.fit_sae(adata, use_rep="X_scVI", n_features=256, k=16, n_epochs=150, batch_size=128, lr=1e-3, random_state=0)
    rows = {}
    for source, target in PAIRS:
        t0 = time.perf_counter()
        out = sl.tl.steer_towards(adata, source={"bulk_labels": source}, target={"bulk_labels": target}, model=model)
        info = out.uns["steer_towards"]
        rows[f"{source} -> {target}"] = {
            "n_features": len(info["features"]),
            **{c: info["params"][c] for c in COLUMNS},
            "seconds": time.perf_counter() - t0,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def batch_driven(adata, threshold: float) -> list[int]:
    acts = adata.obsm["X_sae"].toarray()
    resid = acts - pd.DataFrame(acts).groupby(adata.obs["cell_type"].to_numpy()).transform("mean").to_numpy()
    between = pd.DataFrame(resid).groupby(adata.obs["batch"].to_numpy()).transform("mean").to_numpy()
    total = (resid**2).sum(0)
    eta = np.divide((between**2).sum(0), total, out=np.zeros_like(total), where=total > 0)
    return [int(f) for f in np.flatnonzero(eta >= threshold)]


def simulation() -> pd.DataFrame:
    import scanpy as sc

    adata = sl.sim.simulate(n_cells=1200, n_genes=200, n_programs=10, n_cell_types=6, n_batches=3, random_state=0)
    adata.X = adata.layers["counts"].copy()
    sc.pp.pca(adata, n_comps=12, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_pca", n_features=64, k=8, n_epochs=40, batch_size=128, lr=2e-3, random_state=0)
    live = np.flatnonzero(adata.obsm["X_sae"].getnnz(axis=0) > 0)
    tables = []
    for thr in (0.2, 0.1, 0.05):
        feats = batch_driven(adata, thr)
        if not feats:
            continue
        control = [int(f) for f in live if f not in feats][: len(feats)]
        for name, chosen in ((f"batch-driven, eta2>={thr}", feats), ("control: other features", control)):
            sl.tl.batch_steer(adata, batch_key="batch", features=chosen, label_key="cell_type")
            s = adata.uns["batch_steered"]["scores"]
            if not tables:
                tables.append(s.loc[["X_pca"]].rename(index={"X_pca": "original embedding (PCA of Y)"}))
            tables.append(s.loc[["X_batch_steered"]].rename(index={"X_batch_steered": f"{name} ({len(chosen)})"}))
    return pd.concat(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40, help="scVI epochs on the PBMCs")
    parser.add_argument("--skip-pbmc", action="store_true")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    if not args.skip_pbmc:
        table = pbmc(args.epochs).round(3)
        rows = table.reset_index(names="pair").to_dict("records")
        save("steering_pbmc", rows, dataset="sl.datasets.pbmc68k_counts() (700 PBMCs)", params=vars(args))
    table = simulation().round(3)
    rows = table.reset_index(names="setting").to_dict("records")
    save("steering_batches", rows, dataset="sl.sim.simulate: 3 batches, 6 cell types", params=vars(args))


if __name__ == "__main__":
    main()

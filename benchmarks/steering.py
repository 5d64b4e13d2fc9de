"""Measurements of the steering tools on real PBMCs and on the simulation with known batches.

1. ``sl.tl.steer_towards`` on ``sl.datasets.pbmc68k_counts()`` (scVI, 10 latent dims; TopK SAE, 256
   features): source -> target pairs of ``bulk_labels``; the chosen features against 50 random sets
   of as many features set to the target's means (distance ratio, marker shift, DE correlation,
   empirical p-values, the fraction of cells closer than under the median random set), the target's
   markers in the DE of steered vs original cells, and the dose-response of the first pair. Control:
   five random sets passed as the "chosen" features (a deliberately wrong choice) through the same
   baseline, next to the retired score (fraction of cells closer than before steering). And
   ``sl.tl.steer``: knocking out, in the target cells, the features ``steer_towards`` raised, against
   50 random knockouts of as many features (distance moved, share of predicted expression moved).
2. ``sl.tl.batch_steer`` on ``sl.sim.simulate`` (3 batches, 6 cell types): clamp the features whose
   variation within cell types is explained by batch (eta^2 >= threshold) and score batch entropy,
   kNN label purity and cell-type ASW before / after, for several thresholds, each against 20 random
   sets of as many live features clamped the same way.

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
    "distance_ratio",
    "distance_ratio_random",
    "distance_ratio_pvalue",
    "frac_closer_than_random",
    "marker_shift",
    "marker_shift_random",
    "marker_shift_pvalue",
    "de_correlation",
    "de_correlation_random",
    "de_correlation_pvalue",
    "markers_up",
]


def closer_than_before(x: np.ndarray, x_new: np.ndarray, centroid: np.ndarray) -> float:
    """The retired ``frac_closer``: fraction of cells closer to the centroid after steering than before."""
    return float((np.linalg.norm(x_new - centroid, axis=1) < np.linalg.norm(x - centroid, axis=1)).mean())


def wrong_choice(adata, source: str, target: str, n_features: int, n_sets: int = 5) -> dict[str, float]:
    """Random feature sets passed as the chosen ones through steer_towards' baseline (medians over ``n_sets``)."""
    from sclens.tl._steering._chance import STRENGTHS
    from sclens.tl._steering._steer_core import select_cells, steer_run
    from sclens.tl._steering._steer_towards import _towards_chance

    run = steer_run(adata, "sae")
    src, tgt = (select_cells(adata, {"bulk_labels": g}) for g in (source, target))
    mu_t = run.embedding(adata, tgt).mean(axis=0)
    m_t, m_s = (np.asarray(run.act[i].mean(axis=0)).ravel() for i in (tgt, src))
    pool = np.flatnonzero((m_s > 0) | (m_t > 0))
    x, z = run.embedding(adata, src), run.act[src].toarray()
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_sets):
        wrong = np.sort(rng.choice(pool, n_features, replace=False))
        _, res = _towards_chance(
            adata, run, src, wrong, mu_t, m_t, n_random=50, strengths=np.array(STRENGTHS), seed=seed, scores_of=None
        )
        x_new = x + (m_t[wrong][None, :] - z[:, wrong]) @ run.w_dec[wrong]
        rows.append({
            "wrong_frac_closer_than_before": closer_than_before(x, x_new, mu_t),
            "wrong_distance_ratio": res["distance_ratio"],
            "wrong_distance_ratio_pvalue": res["distance_ratio_pvalue"],
            "wrong_frac_closer_than_random": res["frac_closer_than_random"],
        })  # fmt: skip
    return pd.DataFrame(rows).median().to_dict()


def pbmc(epochs: int) -> tuple[pd.DataFrame, ...]:
    import scvi

    scvi.settings.seed = 0
    adata = sl.datasets.pbmc68k_counts()
    scvi.model.SCVI.setup_anndata(adata, layer="counts")
    model = scvi.model.SCVI(adata, n_latent=10)
    model.train(max_epochs=epochs, batch_size=128, early_stopping=False, enable_progress_bar=False, accelerator="cpu")
    adata.obsm["X_scVI"] = model.get_latent_representation()
    sl.tl.fit_sae(adata, use_rep="X_scVI", n_features=256, k=16, n_epochs=150, batch_size=128, lr=1e-3, random_state=0)
    rows, dose, control, knockout = {}, None, {}, {}
    for source, target in PAIRS:
        t0 = time.perf_counter()
        out = sl.tl.steer_towards(adata, source={"bulk_labels": source}, target={"bulk_labels": target}, model=model)
        info = out.uns["steer_towards"]
        params = info["params"]
        rows[f"{source} -> {target}"] = {
            "n_features": len(info["features"]),
            **{c: params[c] for c in COLUMNS},
            "seconds": time.perf_counter() - t0,
        }
        if dose is None:
            dose = info["dose_response"].assign(pair=f"{source} -> {target}")
        n = out.n_obs // 2
        emb = out.obsm["X_scVI"]
        control[f"{source} -> {target}"] = {
            "chosen_frac_closer_than_before": closer_than_before(emb[:n], emb[n:], info["target_centroid"]),
            "chosen_frac_closer_than_random": params["frac_closer_than_random"],
            "chosen_distance_ratio_pvalue": params["distance_ratio_pvalue"],
            **wrong_choice(adata, source, target, len(info["features"])),
        }
        chosen = info["features"]
        raised = [int(f) for f in chosen.index[chosen["mean_change"] > 0]]
        ko = sl.tl.steer(adata, features=raised, mode="knockout", cells={"bulk_labels": target}, model=model)
        ko_params = ko.uns["steer"]["params"]
        metrics = [f"{m}{s}" for m in ("displacement", "expression_shift") for s in ("", "_random", "_pvalue")]
        knockout[f"{target}: raised features of {source} -> {target}"] = {
            "n_features": len(raised),
            **{m: ko_params[m] for m in metrics},
        }
    frame = pd.DataFrame.from_dict
    return frame(rows, orient="index"), dose, frame(control, orient="index"), frame(knockout, orient="index")


def batch_driven(adata, threshold: float) -> list[int]:
    acts = adata.obsm["X_sae"].toarray()
    resid = acts - pd.DataFrame(acts).groupby(adata.obs["cell_type"].to_numpy()).transform("mean").to_numpy()
    between = pd.DataFrame(resid).groupby(adata.obs["batch"].to_numpy()).transform("mean").to_numpy()
    total = (resid**2).sum(0)
    eta = np.divide((between**2).sum(0), total, out=np.zeros_like(total), where=total > 0)
    return [int(f) for f in np.flatnonzero(eta >= threshold)]


def simulation() -> pd.DataFrame:
    import scanpy as sc

    # batch_sd=0.2 (preset 0.1), as the tests: with the preset the SAE fits the batch shift into its program features
    adata = sl.sim.simulate(
        n_cells=1200, n_genes=200, n_programs=10, n_cell_types=6, n_batches=3, batch_sd=0.2, random_state=0
    )
    adata.X = adata.layers["counts"].copy()
    sc.pp.pca(adata, n_comps=12, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_pca", n_features=64, k=8, n_epochs=40, batch_size=128, lr=2e-3, random_state=0)
    tables = []
    for thr in (0.2, 0.1, 0.05):
        feats = batch_driven(adata, thr)
        if not feats:
            continue
        sl.tl.batch_steer(adata, batch_key="batch", features=feats, label_key="cell_type")
        res = adata.uns["batch_steered"]
        s = res["scores"]
        if not tables:
            tables.append(s.loc[["X_pca"]].rename(index={"X_pca": "original embedding (PCA of Y)"}))
        params = res["params"]
        row = s.loc[["X_batch_steered"]].rename(index={"X_batch_steered": f"batch-driven, eta2>={thr} ({len(feats)})"})
        for c in ("batch_entropy_gain", "batch_entropy_gain_random", "batch_entropy_gain_pvalue"):
            row[c] = params[c]
        row["label_asw_change_random"] = float(res["baseline"]["label_asw_change"].iloc[1:].median())
        tables.append(row)
    return pd.concat(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40, help="scVI epochs on the PBMCs")
    parser.add_argument("--skip-pbmc", action="store_true")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    if not args.skip_pbmc:
        table, dose, control, knockout = pbmc(args.epochs)
        rows = table.round(3).reset_index(names="pair").to_dict("records")
        save("steering_pbmc", rows, dataset="sl.datasets.pbmc68k_counts() (700 PBMCs)", params=vars(args))
        cols = ["pair", "strength", "chosen", "random_median", "random_q05", "random_q95"]
        rows = dose[cols].round(3).to_dict("records")
        save("steering_pbmc_dose", rows, dataset="sl.datasets.pbmc68k_counts() (700 PBMCs)", params=vars(args))
        rows = control.round(3).reset_index(names="pair").to_dict("records")
        save("steering_pbmc_control", rows, dataset="sl.datasets.pbmc68k_counts() (700 PBMCs)", params=vars(args))
        rows = knockout.round(4).reset_index(names="knockout in").to_dict("records")
        save("steering_pbmc_knockout", rows, dataset="sl.datasets.pbmc68k_counts() (700 PBMCs)", params=vars(args))
    table = simulation().round(3)
    rows = table.reset_index(names="setting").to_dict("records")
    save("steering_batches", rows, dataset="sl.sim.simulate: 3 batches, 6 cell types", params=vars(args))


if __name__ == "__main__":
    main()

"""Size and build time of ``sl.pl.atlas`` for 1,000 features x 50,000 cells (the documented budget: <= 25 MB).

Synthetic run shaped like a real one: TopK activations (k active features per cell, so 3.2% density
at k=32), a 2-D embedding, 1,000 live features with ``max_terms`` kept GO terms each (names from the
embedded GO snapshot when available), 20 top genes per feature, mean activations of 20 groups and a
feature-space UMAP, cells coloured by 20 groups, decoder weights (closest features by cosine). The
atlas shows ``max_cells`` (20,000) of the cells.

Run: ``python benchmarks/atlas_size.py [--n-cells 50000] [--n-features 1000]``: the two documented
configurations (k=32 with 30 terms per feature, k=64 with 50), printed and stored in
``benchmarks/results/atlas_size.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _results import save
from anndata import AnnData
from scipy import sparse

import sclens as sl


def synthetic(n_cells: int, n_features: int, k: int, n_terms: int, seed: int = 0) -> AnnData:
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(n_features, k, replace=False) for _ in range(n_cells)])
    acts = sparse.csr_matrix(
        (rng.gamma(2.0, 0.5, n_cells * k).astype(np.float32), cols, np.arange(0, n_cells * k + 1, k)),
        shape=(n_cells, n_features),
    )
    genes = [f"GENE{g}" for g in range(2000)]
    ids = [f"GO:{i:07d}" for i in range(5000)]
    names = [f"regulation of synthetic process number {i}" for i in range(5000)]
    feat = np.repeat(np.arange(n_features), n_terms)
    term = rng.integers(0, 5000, feat.size)
    results = pd.DataFrame({
        "feature": feat, "term": np.asarray(ids)[term], "name": np.asarray(names)[term],
        "pvalue": np.sort(rng.random(feat.size) ** 8), "padj": rng.random(feat.size) ** 4,
    })  # fmt: skip
    top = pd.DataFrame({
        "feature": np.repeat(np.arange(n_features), 20), "gene": rng.choice(genes, n_features * 20),
        "log2fc": rng.gamma(2, 1, n_features * 20), "padj": rng.random(n_features * 20) * 1e-3,
    })  # fmt: skip
    groups = [f"cell type {g}" for g in range(20)]
    table = pd.DataFrame(
        {
            "frequency": np.diff(acts.tocsc().indptr) / n_cells, "kind": "local",
            "top_group": rng.choice(groups, n_features), "n_terms": n_terms,
            "label": [f"term {i} | GENE{i}, GENE{i + 1} | cell type {i % 20}" for i in range(n_features)],
        },
        index=[str(i) for i in range(n_features)],
    )  # fmt: skip
    means = pd.DataFrame(rng.random((n_features, 20)), index=table.index, columns=groups)
    space = {
        "features": np.arange(n_features), "umap": rng.normal(size=(n_features, 2)),
        "category": rng.choice(["cellular process", "metabolic process", "response to stimulus"], n_features),
        "params": {"annotation_key": "sae_go"},
    }  # fmt: skip
    return AnnData(
        np.zeros((n_cells, 1), np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(rng.choice(groups, n_cells))}, index=map(str, range(n_cells))),
        obsm={"X_sae": acts, "X_umap": rng.normal(size=(n_cells, 2)).astype(np.float32)},
        uns={  # the layout sl.tl writes (sclens._readers.store_result), without run ids
            "sae": {
                "params": {"architecture": "topk", "n_features": n_features, "k": k},
                "features": table,
                "specificity": {"group_means": means, "params": {"groupby": "cell_type"}},
                "weights": {"W_dec": rng.normal(size=(n_features, 64)).astype(np.float32)},
            },
            "sae_go": {"results": results, "top_genes": top, "feature_space": space, "params": {"sae_key": "sae"}},
        },
    )


CONFIGS = ((32, 30), (64, 50))  # (k, terms per feature)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=50_000)
    parser.add_argument("--n-features", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    for k, max_terms in CONFIGS:
        adata = synthetic(args.n_cells, args.n_features, k, max_terms)
        atlas = sl.pl.atlas  # the first access imports sl.pl (matplotlib, scanpy): not part of the build
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = atlas(adata, Path(tmp) / "atlas.html", max_terms=max_terms)
            seconds = time.perf_counter() - t0
            size = path.stat().st_size / 1e6
        rows.append({
            "cells": args.n_cells, "features": args.n_features, "k": k, "shown_cells": min(args.n_cells, 20_000),
            "terms_per_feature": max_terms, "size_mb": size, "build_s": seconds,
        })  # fmt: skip
        print(rows[-1], flush=True)
    dataset = f"synthetic TopK run: {args.n_cells:,} cells, {args.n_features:,} features, 20 cell groups"
    save("atlas_size", rows, dataset=dataset, params=vars(args), notes="build time excludes the import of sl.pl")


if __name__ == "__main__":
    main()

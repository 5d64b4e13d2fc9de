"""Draw docs/_static/quickstart.png, the README figure, from the README's quick start.

Run from the repository root: ``python scripts/make_readme_figure.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sclens as sl

adata = sl.datasets.pbmc68k_counts()
sl.tl.fit_sae(adata, use_rep="X_pca", n_features=256, k=16)
sl.tl.feature_specificity(adata, groupby="bulk_labels")
go = sl.datasets.go_gene_sets("human", namespaces=("BP", "MF"))
sl.tl.annotate_features(adata, gene_sets=go, layer="counts")
features = adata.uns["sae"]["features"]


def strongest_local(group: str) -> int:
    local = features[(features["kind"] == "local") & (features["top_group"] == group) & (features["n_terms"] > 0)]
    return int(local.sort_values("mean_activation", ascending=False).index[0])


b, mono = strongest_local("CD19+ B"), strongest_local("CD14+ Monocyte")
fig = plt.figure(figsize=(13, 7.5), layout="constrained")
grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.6])
for row, feature in enumerate((b, mono)):
    sl.pl.feature_activation(adata, features=feature, basis="umap", ax=fig.add_subplot(grid[row, 0]))
    sl.pl.enrichment(adata, features=feature, n_terms=6, ax=fig.add_subplot(grid[row, 1]))
out = Path("docs/_static/quickstart.png")
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=90)
print(f"wrote {out} (B-cell feature {b}, monocyte feature {mono})")

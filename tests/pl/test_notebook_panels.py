"""Multi-panel figures drawn with ``ax=`` keep every panel when run in a real Jupyter kernel.

Before the one ``finish`` rule, the first ``sl.pl.feature_umap(..., ax=axes[0])`` showed (and so
closed) the figure the user was still drawing into: the inline backend rendered only the first
panel. Here a notebook draws a 1 x 3 feature-space figure and a 1 x 2 enrichment figure; each cell
must render exactly one PNG in which every panel holds coloured points.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

SETUP = """\
%matplotlib inline
import numpy as np, pandas as pd, matplotlib.pyplot as plt
from anndata import AnnData
import sclens as sl
rng = np.random.default_rng(0)
ad = AnnData(np.zeros((5, 3), dtype=np.float32))
n = 30
ad.uns["sae_go"] = {
    "results": pd.DataFrame({
        "feature": np.repeat([0, 1], 3), "term": [f"GO:{i}" for i in range(6)], "name": [f"term {i}" for i in range(6)],
        "namespace": "BP", "n_overlap": 5, "set_size": 20, "n_de": 30, "odds_ratio": 3.0,
        "pvalue": [1e-6, 1e-5, 1e-4] * 2, "padj": [1e-5, 1e-4, 1e-3] * 2,
    }),
    "params": {},
    "feature_space": {"features": np.arange(n), "umap": rng.normal(size=(n, 2)),
                      "category": np.repeat(["immune", "metabolic", "signal"], 10), "params": {}},
}
"""
UMAP_PANELS = """\
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax in axes:
    sl.pl.feature_umap(ad, ax=ax, legend=False, size=40)
assert plt.fignum_exists(fig.number), "a plot drawn into ax closed the figure"
print([len(ax.collections) + len(ax.lines) for ax in axes])
"""
ENRICHMENT_PANELS = """\
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for f, ax in enumerate(axes):
    sl.pl.enrichment(ad, features=f, ax=ax)
assert plt.fignum_exists(fig.number), "a plot drawn into ax closed the figure"
print([len(ax.collections) for ax in axes])
"""


def _coloured_columns(png: bytes, n_panels: int) -> list[int]:
    """Saturated (non-grey) pixels in each vertical strip of the rendered figure."""
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    saturated = (img.max(axis=2) - img.min(axis=2)) > 0.25
    return [int(s.sum()) for s in np.array_split(saturated, n_panels, axis=1)]


@pytest.mark.slow
def test_panels_render_in_a_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel uses the inline backend
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, UMAP_PANELS, ENRICHMENT_PANELS)]
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    for cell, n_panels in ((nb.cells[1], 3), (nb.cells[2], 2)):
        pngs = [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, f"expected one rendered figure, got {len(pngs)}"
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        counts = eval(text.strip())  # the artists of each axes, printed in the kernel
        assert len(counts) == n_panels and min(counts) > 0, counts
        coloured = _coloured_columns(pngs[0], n_panels)
        assert min(coloured) > 50, f"a panel rendered without coloured points: {coloured}"

"""``sl.pl.atlas``: what the page's data holds, decoded back in Python, and its limits."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sclens as sl


@pytest.fixture
def toy(atlas_toy):
    return atlas_toy


def _payload(path: Path) -> dict:
    html = path.read_text()
    text = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', html, flags=re.S).group(1)
    return json.loads(text.replace("<\\/", "</"))


def _decode(b64: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=dtype)


def test_top_genes_are_the_planted_programs(toy):
    top = toy.uns["sae_go"]["top_genes"]
    gs = toy.uns["toy"]["gene_sets"]
    assert set(top.columns) >= {"feature", "gene", "log2fc", "padj"}
    assert (top["log2fc"] > 0).all()
    assert (top["padj"] < 0.05).all()
    precision = []
    for f in range(16):
        genes = top.loc[top["feature"] == f, "gene"].head(5)
        program = set(gs.loc[gs["source"] == f"program_{f:02d}", "target"])
        precision.append(genes.isin(program).mean())
    assert np.mean(precision) > 0.8


def test_payload_round_trip(toy, tmp_path):
    out = sl.pl.atlas(toy, tmp_path / "atlas.html", basis="umap", max_cells=400, random_state=3)
    assert out == tmp_path / "atlas.html"
    html = out.read_text()
    assert "<script src" not in html
    assert "http://" not in html
    assert "https://" not in html
    d = _payload(out)
    assert d["features"]["id"] == list(range(16))  # the dead feature 16 is left out
    cells = np.sort(np.random.default_rng(3).choice(toy.n_obs, size=400, replace=False))
    xy = toy.obsm["X_umap"][cells]
    x = _decode(d["cells"]["x"], "<u2") / 65535 * np.ptp(xy[:, 0]) + xy[:, 0].min()
    np.testing.assert_allclose(x, xy[:, 0], atol=np.ptp(xy[:, 0]) / 65535)
    acts = toy.obsm["X_sae"][cells].toarray()
    idx, val, ptr = _decode(d["act"]["idx"], "<u2"), _decode(d["act"]["val"], "u1"), d["act"]["ptr"]
    for f in (0, 7, 15):
        rows = idx[ptr[f] : ptr[f + 1]]
        np.testing.assert_array_equal(rows, np.flatnonzero(acts[:, f]))
        restored = val[ptr[f] : ptr[f + 1]] / 255 * d["act"]["max"][f]
        np.testing.assert_allclose(restored, acts[rows, f], atol=acts[:, f].max() / 255, rtol=1e-3)
    res = toy.uns["sae_go"]["results"]
    first = res[res["feature"] == 2].iloc[0]
    t = d["terms"]["by_feature"]["2"][0]
    assert d["terms"]["ids"][t[0]] == first["term"]
    assert t[1] == pytest.approx(first["pvalue"], rel=1e-3)
    assert [g[0] for g in d["genes"]["2"]] == toy.uns["sae_go"]["top_genes"].query("feature == 2")["gene"].tolist()
    means = toy.uns["sae"]["specificity"]["group_means"].T
    assert d["spec"]["groups"] == list(means.columns)
    np.testing.assert_allclose(d["spec"]["by_feature"]["5"], means.loc["5"], rtol=1e-3)


def test_label_column_preferred_and_neighbours(toy, tmp_path):
    ad = toy.copy()
    feats = ad.uns["sae"]["features"].copy()
    feats["label"] = ""
    feats.loc["3", "label"] = "planted | gene_0001 | type_1"
    ad.uns["sae"]["features"] = feats
    sl.tl.feature_alignment(ad, groupby="cell_type", key_added="cell_types")
    d = _payload(sl.pl.atlas(ad, tmp_path / "a.html", alignment_key="cell_types"))
    assert d["features"]["label"][3] == "planted | gene_0001 | type_1"
    assert d["features"]["label"][4] == feats.loc["4", "best_term"]  # empty label: best term
    # annotate_features' term themes, then the columns of the alignment result named by alignment_key
    assert d["meta"]["columns"] == ["n_term_clusters", "cell_type_best", "cell_type_auroc", "cell_type_f1"]
    table = ad.uns["sae"]["features"]
    assert d["features"]["cell_type_auroc"][0] == pytest.approx(table.loc["0", "cell_type_auroc"], rel=1e-3)
    assert d["features"]["cell_type_best"][3] == table.loc["3", "cell_type_best"]
    assert "cell_type_auroc" not in _payload(sl.pl.atlas(ad, tmp_path / "b.html"))["meta"]["columns"]
    # Jaccard neighbours: the closest feature shares the most terms
    res = ad.uns["sae_go"]["results"]
    sets = {f: set(g["term"]) for f, g in res.groupby("feature")}
    near = d["near"]["by_feature"]["0"]
    jac = {g: len(sets[0] & s) / len(sets[0] | s) for g, s in sets.items() if g != 0}
    assert d["near"]["method"] == "jaccard"
    assert near[0][1] == pytest.approx(max(jac.values()), rel=1e-3)


def test_steering_tables(toy, tmp_path):
    steered = pd.DataFrame({"term": ["program_01"], "name": ["program_01"], "pvalue": [1e-5]})
    d = _payload(sl.pl.atlas(toy, tmp_path / "s.html", steering={1: steered}))
    assert d["steer"] == {"1": [["program_01", "program_01", 1e-5]]}
    with pytest.raises(TypeError, match="must be a DataFrame of kept terms"):
        sl.pl.atlas(toy, tmp_path / "s.html", steering={1: [1, 2]})


def test_errors_leave_no_file(toy, tmp_path):
    path = tmp_path / "bad.html"
    with pytest.raises(KeyError, match=r"obsm\['X_tsne'\]"):
        sl.pl.atlas(toy, path, basis="tsne")
    with pytest.raises(KeyError, match="No SAE run under key 'other'"):
        sl.pl.atlas(toy, path, sae_key="other")
    with pytest.raises(ValueError, match="max_cells must be between"):
        sl.pl.atlas(toy, path, max_cells=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sl.pl.atlas(toy, tmp_path / "missing" / "a.html")
    assert list(tmp_path.iterdir()) == []


def test_size_budget_scaled():
    """1,000 TopK features (k=32) x 20,000 shown cells: the payload stays well under the 25 MB budget."""
    from scipy import sparse

    from sclens.pl._atlas_data import activations

    rng = np.random.default_rng(0)
    n, f, k = 20_000, 1000, 32
    cols = np.argsort(rng.random((n, f)), axis=1)[:, :k].ravel()
    acts = sparse.csr_matrix((rng.random(n * k).astype(np.float32) + 0.01, cols, np.arange(0, n * k + 1, k)), (n, f))
    size = len(json.dumps(activations(acts, np.arange(n), np.arange(f))))
    assert size < 6e6, size

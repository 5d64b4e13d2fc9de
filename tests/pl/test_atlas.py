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
    themes = sl.get.feature_terms(toy, features=2, themes=True)  # one row per term theme, its representative
    rows = d["terms"]["by_feature"]["2"]
    assert [d["terms"]["ids"][t[0]] for t in rows] == themes.index[:30].tolist()
    np.testing.assert_allclose([t[1] for t in rows], themes["pvalue"][:30], rtol=5e-3)  # 3 digits
    assert [t[3] for t in rows] == (themes["n_theme_terms"][:30] - 1).tolist()
    top = toy.uns["sae_go"]["top_genes"].query("feature == 2")
    by_padj = top.sort_values(["padj", "log2fc"], ascending=[True, False], kind="stable")
    assert [g[0] for g in d["genes"]["2"]] == by_padj["gene"].tolist()  # sorted by padj, as the card says
    np.testing.assert_allclose([g[2] for g in d["genes"]["2"]], by_padj["padj"], rtol=5e-3)  # 3 digits
    np.testing.assert_allclose([g[1] for g in d["genes"]["2"]], by_padj["log2fc"], rtol=5e-3)
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
    assert d["meta"]["labels"]["n_term_clusters"] == "term themes"
    assert d["meta"]["labels"]["cell_type_auroc"] == "cell type AUROC"
    # Jaccard neighbours: the closest feature shares the most terms
    res = ad.uns["sae_go"]["results"]
    sets = {f: set(g["term"]) for f, g in res.groupby("feature")}
    assert d["near"]["terms"]["method"] == "jaccard"
    near = d["near"]["terms"]["by_feature"]["0"]
    jac = {g: len(sets[0] & s) / len(sets[0] | s) for g, s in sets.items() if g != 0}
    assert near[0][1] == pytest.approx(max(jac.values()), rel=1e-3)
    assert jac[near[0][0]] == max(jac.values())


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


def test_card_evidence(toy, tmp_path):
    """Groups of the shown cells, trust evidence, skip reasons, the term rule and decoder neighbours."""
    ad = toy.copy()
    sl.tl.feature_alignment(ad, groupby="cell_type")
    feats = ad.uns["sae"]["features"].copy()
    feats["cell_type_best"] = "type_2"
    feats["cell_type_auroc"] = 0.91234
    feats["cell_type_f1"] = np.nan
    feats["annotation_fdr"] = np.linspace(0, 0.5, len(feats))
    feats["stability"] = 0.8
    ad.uns["sae"]["features"] = feats
    ad.uns["sae_go"]["skipped"] = pd.DataFrame({"feature": [5], "reason": ["too few high cells"], "n_high": [3],
                                                "n_low": [200]})  # fmt: skip
    w = np.random.default_rng(0).normal(size=(17, 6))
    ad.uns["sae"]["weights"] = {"W_dec": w}
    d = _payload(sl.pl.atlas(ad, tmp_path / "a.html", max_cells=300, random_state=1))
    cells = np.sort(np.random.default_rng(1).choice(ad.n_obs, size=300, replace=False))
    assert d["groups"]["by"] == "cell_type"  # the groupby of feature_specificity
    names = np.asarray(d["groups"]["names"])[_decode(d["groups"]["code"], "<u2")]
    np.testing.assert_array_equal(names, ad.obs["cell_type"].astype(str).to_numpy()[cells])
    assert len(d["groups"]["colors"]) == len(d["groups"]["names"]) == ad.obs["cell_type"].nunique()
    assert d["trust"]["4"] == [
        ["best match in obs['cell_type']", "type_2: AUROC 0.912", "sl.tl.feature_alignment"],
        ["annotation null FDR", round(feats.loc["4", "annotation_fdr"], 3), "sl.tl.annotation_null"],
        ["seed stability (|cos| of its match in a refit)", 0.8, "sl.tl.feature_stability"],
    ]
    assert d["skipped"] == {"5": "too few high cells (3 high, 200 low cells)"}
    params = ad.uns["sae_go"]["params"]
    test = f"over-representation of the genes up-regulated at DE padj < {params['de_alpha']}"
    kept_on_p = (ad.uns["sae_go"]["results"]["padj"] >= params["alpha"]).any()  # raw p < alpha kept them
    rule = (
        f"term p < {params['alpha']}, not corrected across terms"
        if kept_on_p
        else (f"term padj < {params['alpha']} (BH within the feature)")
    )
    assert d["meta"]["term_rule"] == f"{test}: {rule}"
    from sclens.pl._atlas_features import term_rule

    res = pd.DataFrame({"padj": [0.01, 0.2]})
    assert term_rule({"alpha": 0.05, "de_alpha": 0.05}, res).endswith("term p < 0.05, not corrected across terms")
    assert term_rule({"alpha": 0.05, "de_alpha": 0.05}, res[:1]).endswith("term padj < 0.05 (BH within the feature)")
    assert term_rule({"flavor": "scfeaturelens", "alpha": 0.01}, res).startswith("Mann-Whitney p \u2264 0.01")
    unit = w[:16] / np.linalg.norm(w[:16], axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    order = np.argsort(-cos[7], kind="stable")[:8]
    assert [n[0] for n in d["near"]["decoder"]["7"]] == order.tolist()
    np.testing.assert_allclose([n[1] for n in d["near"]["decoder"]["7"]], cos[7, order], rtol=5e-3)


def test_groups_pooled_beyond_max(toy, tmp_path):
    from sclens.pl._atlas_data import MAX_GROUPS

    ad = toy.copy()
    ad.obs["many"] = [f"g{i % 40:02d}" for i in range(ad.n_obs)]
    ad.obs.loc[ad.obs_names[:20], "many"] = "g07"  # the largest group
    d = _payload(sl.pl.atlas(ad, tmp_path / "a.html", groupby="many"))
    assert len(d["groups"]["names"]) == MAX_GROUPS and d["groups"]["names"][-1] == "other"
    assert "g07" in d["groups"]["names"]
    codes = _decode(d["groups"]["code"], "<u2")
    shown = np.asarray(d["groups"]["names"])[codes]
    kept = ad.obs["many"].isin(d["groups"]["names"]).to_numpy()
    np.testing.assert_array_equal(shown[kept], ad.obs["many"].to_numpy()[kept])
    assert (shown[~kept] == "other").all()


def test_card_terms_are_themes():
    """The card lists each term theme once, by its representative, themes in the order of their best term."""
    from sclens.pl._atlas_features import terms

    res = pd.DataFrame({
        "feature": [3, 3, 3, 3, 5],
        "term": ["GO:broad", "GO:other", "GO:narrow", "GO:mid", "GO:x"],
        "name": ["broad", "other", "narrow", "mid", "x"],
        "pvalue": [1e-9, 1e-8, 1e-6, 1e-5, 1e-3],
        "padj": [1e-8, 1e-7, 1e-5, 1e-4, 1e-2],
        "term_cluster": [0, 1, 0, 0, 0],
        "representative": [False, True, True, False, True],
    })  # fmt: skip
    out = terms(res, np.array([3, 5]), max_terms=30)
    names = {f: [out["names"][r[0]] for r in rows] for f, rows in out["by_feature"].items()}
    assert names == {"3": ["narrow", "other"], "5": ["x"]}
    assert [r[3] for r in out["by_feature"]["3"]] == [2, 0]  # narrow stands for broad and mid
    assert out["by_feature"]["3"][0][1:3] == [1e-6, 1e-5]
    assert [out["names"][r[0]] for r in terms(res, np.array([3]), max_terms=1)["by_feature"]["3"]] == ["narrow"]
    flat = terms(res.drop(columns=["term_cluster", "representative"]), np.array([3]), max_terms=30)
    assert [flat["names"][r[0]] for r in flat["by_feature"]["3"]] == ["broad", "other", "narrow", "mid"]  # by p
    assert [r[3] for r in flat["by_feature"]["3"]] == [0, 0, 0, 0]

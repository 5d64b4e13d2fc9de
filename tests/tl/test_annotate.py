"""annotate_features / contrast: planted signal, engines agree, skipped features, storage, errors."""

from __future__ import annotations

import anndata as ad_
import numpy as np
import pandas as pd
import pytest

import sclens as sl

N_PROG = 16  # toy_annot: 8 local + 8 global programs, then control (16), tiny (17), dead (18)


def test_planted_programs_fast(toy_annot_copy):
    ad = toy_annot_copy
    gsets = ad.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(ad, gene_sets=gsets, layer="counts", min_size=3)
    res = ad.uns["sae_go"]["results"]
    table = ad.uns["sae"]["features"]
    for f in range(N_PROG):
        assert table.loc[str(f), "best_term"] == f"program_{f:02d}"
        # readable label "representative term | top genes": the top genes belong to the planted program
        term, genes = table.loc[str(f), "label"].split(" | ")
        assert term == f"program_{f:02d}"
        members = set(gsets.loc[gsets["source"] == term, "target"])
        assert len(genes.split(", ")) == 3 and set(genes.split(", ")) <= members
    control = res[res["feature"] == N_PROG]
    assert not control["term"].str.startswith("program_").any()
    assert table.loc[str(N_PROG), "n_terms"] == len(control)
    # the tiny feature (active in 4 cells) is tested on all 4; the dead feature left out by features=None
    assert ad.uns["sae_go"]["skipped"].empty
    assert table.loc[str(N_PROG + 1), ["n_high", "skip_reason"]].tolist() == [4, ""]
    assert table.loc["0", "n_high"] == 50 and table.loc["0", "n_low"] == 1000  # min_high: 1 % of 1,500 is 15
    assert (ad.uns["sae_go"]["params"]["features"] == np.arange(N_PROG + 2)).all()
    # the default rule: BH-adjusted p < 0.05 within each feature; the best term's padj in the table
    assert (res["padj"] < 0.05).all() and ad.uns["sae_go"]["params"]["alpha"] == 0.05
    best = res.groupby("feature").head(1).set_index("feature")["padj"]
    np.testing.assert_array_equal(table.loc[best.index.astype(str), "best_padj"], best.to_numpy())
    assert list(res.columns[:4]) == ["feature", "term", "name", "namespace"]


@pytest.mark.slow
def test_planted_programs_both_engines(engines_pair):
    for key in ("fast", "deseq2"):
        table = engines_pair.uns["sae"]["features"]
        res = engines_pair.uns[key]["results"]
        top = res.groupby("feature")["term"].first()
        hits = sum(top.get(f) == f"program_{f:02d}" for f in range(20))
        assert hits >= 19, (key, top)
        assert not res.loc[res["feature"] == 20, "term"].str.startswith("program_").any(), key
        assert table.shape[0] == 23


@pytest.mark.slow
def test_engines_agree_on_terms(engines_pair):
    a, b = engines_pair.uns["fast"]["results"], engines_pair.uns["deseq2"]["results"]
    jac = []
    for f in range(20):
        sa, sb = set(a.loc[a["feature"] == f, "term"]), set(b.loc[b["feature"] == f, "term"])
        jac.append(len(sa & sb) / max(len(sa | sb), 1))
    assert np.median(jac) >= 0.8, jac


def test_within_and_low_quantile(toy_annot_copy):
    ad = toy_annot_copy
    gs = ad.uns["toy"]["gene_sets"]
    local = [f for f in range(8) if ad.uns["toy"]["program_group"][f] == "type_0"]
    sl.tl.annotate_features(ad, gene_sets=gs, layer="counts", features=local, cells={"cell_type": "type_0"},
                            high_quantile=0.95, low_quantile=0.05, n_low=200, min_size=3, key_added="w")  # fmt: skip
    top = ad.uns["w"]["results"].groupby("feature")["term"].first()
    assert [top[f] for f in local] == [f"program_{f:02d}" for f in local]
    with pytest.raises(ValueError, match=r"cells: \['B cells'\] not found"):
        sl.tl.annotate_features(ad, gene_sets=gs, layer="counts", cells={"cell_type": "B cells"})


def test_scfeaturelens_flavor(toy_annot_copy):
    ad = toy_annot_copy
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", flavor="scfeaturelens",
                            features=list(range(N_PROG)))  # fmt: skip
    res = ad.uns["sae_go"]["results"]
    # the 2 x 2 table of each kept term (hits, DE genes, set size, all 300 genes measured) gives its odds ratio
    a, b, c = res["n_overlap"], res["n_de"] - res["n_overlap"], res["set_size"] - res["n_overlap"]
    np.testing.assert_allclose(res["odds_ratio"], a * (ad.n_vars - res["set_size"] - b) / (b * c), rtol=1e-12)
    top = res.groupby("feature")["term"].first()
    assert sum(top.get(f) == f"program_{f:02d}" for f in range(N_PROG)) >= N_PROG - 1
    assert (res["pvalue"] <= 0.01).all() and (res["n_overlap"] >= 1).all()
    assert ad.uns["sae_go"]["params"]["de_method"] == "welch"


def test_h5ad_round_trip(toy_annot_copy, tmp_path):
    ad = toy_annot_copy
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, return_de=[0, 3])
    sl.tl.contrast(ad, groupby="cell_type", groups="type_0", gene_sets=ad.uns["toy"]["gene_sets"], layer="counts",
                   min_size=3)  # fmt: skip
    path = tmp_path / "a.h5ad"
    ad.write_h5ad(path)
    back = ad_.read_h5ad(path)
    for key in ("results", "skipped"):
        a, b = ad.uns["sae_go"][key], back.uns["sae_go"][key]
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.to_numpy().astype(str), b.to_numpy().astype(str))
    assert back.uns["sae_go"]["de"]["3"].shape == (ad.n_vars, 5)
    assert back.uns["sae"]["features"]["best_term"].tolist() == ad.uns["sae"]["features"]["best_term"].tolist()
    assert back.uns["sae_go"]["params"]["de_method"] == "fast"
    assert back.uns["contrast"]["de"].shape == (ad.n_vars, 5)
    assert len(back.uns["contrast"]["results"]) == len(ad.uns["contrast"]["results"])


def test_contrast_recovers_local_programs(toy_annot_copy):
    ad = toy_annot_copy
    sl.tl.contrast(ad, groupby="cell_type", groups="type_1", gene_sets=ad.uns["toy"]["gene_sets"], layer="counts",
                   min_size=3)  # fmt: skip
    terms = set(ad.uns["contrast"]["results"]["term"])
    local = {f"program_{f:02d}" for f in range(8) if ad.uns["toy"]["program_group"][f] == "type_1"}
    assert local <= terms
    with pytest.raises(ValueError, match=r"\['type_9'\] not found in `adata.obs\['cell_type'\]`"):
        sl.tl.contrast(ad, groupby="cell_type", groups="type_9", gene_sets=ad.uns["toy"]["gene_sets"], layer="counts")


def test_copy_and_feature_errors(toy_annot):
    gs = toy_annot.uns["toy"]["gene_sets"]
    out = sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="counts", features=[0, 1], min_size=3, copy=True)
    assert "sae_go" in out.uns and "sae_go" not in toy_annot.uns
    assert "n_terms" not in toy_annot.uns["sae"]["features"]
    with pytest.raises(ValueError, match=r"feature 99 is out of range: this SAE has 19 features \(0..18\)"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="counts", features=[0, 99])
    with pytest.raises(ValueError, match=r"Feature\(s\) \[18\] are dead"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="counts", features=[18])
    with pytest.raises(KeyError, match="No SAE run under key 'other'"):
        sl.tl.annotate_features(toy_annot, gene_sets=gs, layer="counts", sae_key="other")
    assert "sae_go" not in toy_annot.uns


def test_model_predicted_expression(scvi_toy):
    """``model=``: the decoder mean at each cell's observed library size, in chunks, as scvi-tools computes it."""
    import torch

    from sclens.tl._annotation._de import Expression

    ad, model = scvi_toy
    expr = Expression(ad, model=model)
    parts = list(expr.chunks(np.arange(ad.n_obs), chunk_size=128))
    assert [p[1].shape[0] for p in parts] == [128, 128, 44]
    pred = np.vstack([p[1] for p in parts])
    # decoder proportions times the observed library size: rows sum to each cell's total count
    lib = np.asarray(ad.layers["counts"].sum(axis=1)).ravel()
    np.testing.assert_allclose(pred.sum(axis=1), lib, rtol=1e-5)
    idx = np.array([3, 50, 299])
    torch.manual_seed(7)
    ours = expr.dense(idx)
    torch.manual_seed(7)
    ref = model.get_normalized_expression(ad, indices=idx, library_size="latent", return_numpy=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Pass either `layer=` \(observed counts\) or `model=`"):
        Expression(ad, layer="counts", model=model)


def test_annotate_with_model(scvi_toy):
    ad, model = scvi_toy
    ad = ad.copy()
    gs = ad.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(ad, gene_sets=gs, model=model, features=[0, 1], high_quantile=0.9, n_low=200,
                            min_size=3, return_de=[0])  # fmt: skip
    params = ad.uns["sae_go"]["params"]
    assert params["expression"] == "model:SCVI"
    de = ad.uns["sae_go"]["de"]["0"]
    assert de.shape == (ad.n_vars, 5) and de["stat"].notna().all()
    res = ad.uns["sae_go"]["results"]
    n_terms = ad.uns["sae"]["features"].loc[["0", "1"], "n_terms"].tolist()
    assert n_terms == [int((res["feature"] == f).sum()) for f in (0, 1)]  # one row per kept term


def test_any_model_callable_or_layer_same_engine_and_null(scvi_toy):
    """``model=`` as a callable or a layer of predictions gives what the scvi-tools path gives; the null runs on all."""
    import torch

    ad, model = scvi_toy
    ad = ad.copy()
    gs = ad.uns["toy"]["gene_sets"]
    kw = {"gene_sets": gs, "features": [0, 1, 2], "high_quantile": 0.9, "n_low": 200, "min_size": 3,
          "return_de": [0]}  # fmt: skip

    def scvi_predict(cells):
        return model.get_normalized_expression(ad, indices=cells, library_size="latent", return_numpy=True)

    for key, m in (("scvi", model), ("fn", scvi_predict)):
        torch.manual_seed(0)  # scvi-tools samples the latent: the same draws for both
        sl.tl.annotate_features(ad, model=m, key_added=key, **kw)
    pd.testing.assert_frame_equal(ad.uns["scvi"]["de"]["0"], ad.uns["fn"]["de"]["0"])
    assert ad.uns["fn"]["params"]["expression"] == "model:scvi_predict"

    ad.layers["pred"] = scvi_predict(np.arange(ad.n_obs))
    stored = ad.layers["pred"].copy()
    sl.tl.annotate_features(ad, model="pred", key_added="layer", **kw)
    sl.tl.annotate_features(ad, model=lambda cells: stored[cells], key_added="rows", **kw)
    pd.testing.assert_frame_equal(ad.uns["layer"]["de"]["0"], ad.uns["rows"]["de"]["0"])
    assert ad.uns["layer"]["params"]["expression"] == "model:layers['pred']"
    pd.testing.assert_frame_equal(ad.uns["layer"]["results"], ad.uns["rows"]["results"])

    # the null re-runs each: the scvi-tools model on the real cells, the layer without `model=`
    sl.tl.annotation_null(ad, gene_sets=gs, annotation_key="scvi", model=model, n_permutations=1, key_added="n1")
    sl.tl.annotation_null(ad, gene_sets=gs, annotation_key="layer", n_permutations=1, key_added="n2")
    for key in ("n1", "n2"):
        assert ad.uns["sae"][key]["table"]["feature"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"used 'model:scvi_predict'; pass the same model \(or callable\)"):
        sl.tl.annotation_null(ad, gene_sets=gs, annotation_key="fn", n_permutations=1)


def test_model_errors(scvi_toy):
    ad, _ = scvi_toy
    gs = ad.uns["toy"]["gene_sets"]
    kw = {"gene_sets": gs, "features": [0], "min_size": 3}
    with pytest.raises(ValueError, match=r"has shape \(300, 3\); expected \(300, 200\): one row per requested cell"):
        sl.tl.annotate_features(ad.copy(), model=lambda cells: np.ones((cells.size, 3)), **kw)
    with pytest.raises(ValueError, match="has NaN, infinite or negative values"):
        sl.tl.annotate_features(ad.copy(), model=lambda cells: -np.ones((cells.size, ad.n_vars)), **kw)
    with pytest.raises(KeyError, match=r"model='nope': `adata.layers\['nope'\]` not found"):
        sl.tl.annotate_features(ad.copy(), model="nope", **kw)
    with pytest.raises(TypeError, match="model must be a trained scvi-tools model, a callable"):
        sl.tl.annotate_features(ad.copy(), model=3, **kw)

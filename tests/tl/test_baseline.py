"""baseline_features: PCA / ICA / NMF runs in the SAE layout pass through every downstream tool and plot."""

from __future__ import annotations

import anndata as ad_
import matplotlib
import numpy as np
import pytest
from sklearn.decomposition import PCA

import sclens as sl

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def runs():
    adata = sl.datasets.toy(n_cells=1000, n_genes=300, random_state=0)
    for method in ("pca", "ica"):
        sl.tl.baseline_features(adata, use_rep="X_emb", method=method, n_components=8)
    return adata


def test_pca_split_and_fvu_match_sklearn(runs):
    x = runs.obsm["X_emb"].astype(np.float64)
    ref = PCA(n_components=8, random_state=0).fit(x)
    scores = ref.transform(x)
    act = runs.obsm["X_pca_baseline"]
    assert act.format == "csr" and act.dtype == np.float32 and act.shape == (1000, 16)
    assert act.min() >= 0
    dense = act.toarray()
    signed = dense[:, :8] - dense[:, 8:]
    # component signs are arbitrary up to sklearn's svd_flip, which both use
    np.testing.assert_allclose(signed, scores, rtol=1e-4, atol=1e-4)
    assert runs.uns["pca_baseline"]["metrics"]["fvu"] == pytest.approx(
        1 - ref.explained_variance_ratio_.sum(), rel=1e-5
    )
    table = runs.uns["pca_baseline"]["features"]
    assert table["component"].tolist() == list(range(8)) * 2
    assert table["sign"].tolist() == ["+"] * 8 + ["-"] * 8
    assert runs.uns["pca_baseline"]["params"]["source"] == "baseline_features"
    assert isinstance(runs.uns["pca_baseline"]["run_id"], str)


def test_nmf_is_non_negative_and_fits(runs):
    nmf = sl.tl.baseline_features(runs, use_rep="X_emb", method="nmf", n_components=4, key_added="nmf4", copy=True)
    assert nmf.obsm["X_nmf4"].shape == (1000, 4)
    assert 0 < nmf.uns["nmf4"]["metrics"]["fvu"] < 1
    assert "X_nmf4" not in runs.obsm  # copy=True left the input alone


@pytest.mark.parametrize("method", ["pca", "ica"])
def test_baseline_passes_through_every_downstream_function(runs, method, tmp_path):
    adata, key = runs.copy(), f"{method}_baseline"
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.feature_specificity(adata, groupby="cell_type", sae_key=key)
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", sae_key=key, key_added=f"{key}_go",
                            high_quantile=0.95, min_size=3)  # fmt: skip
    sl.tl.feature_alignment(adata, groupby="cell_type", sae_key=key)
    sl.tl.annotation_null(adata, gene_sets=gs, sae_key=key, annotation_key=f"{key}_go", n_permutations=1)
    # control: the same activations with cells permuted, so no feature follows the cell types
    perm = np.random.default_rng(0).permutation(adata.n_obs)
    adata.obsm["X_shuffled"] = adata.obsm[f"X_{key}"][perm]
    adata.uns["shuffled"] = {"params": {"use_rep": "X_emb"}, "run_id": "shuffled",
                             "features": adata.uns[key]["features"][["kind"]].copy()}  # fmt: skip
    sl.tl.feature_alignment(adata, groupby="cell_type", sae_key="shuffled")
    table = sl.tl.compare_runs(adata, sae_keys=[key, "shuffled"])
    feats = adata.uns[key]["features"]
    assert table.loc[key, "method"] == method and table.loc[key, "n_features"] == 16
    live = feats.index[feats["kind"] != "dead"].astype(int)
    annotated = adata.uns[f"{key}_go"]["results"]["feature"].isin(live)
    n_annotated = adata.uns[f"{key}_go"]["results"].loc[annotated, "feature"].nunique()
    assert table.loc[key, "annotated_fraction"] == pytest.approx(n_annotated / len(live))  # from the results rows
    assert table.loc[key, "annotated_fraction"] > 0.5  # the embedding's directions carry the programs
    control = table.loc["shuffled", "cell_type_median_auroc"]
    # measured median AUROC: pca 0.649, ica 0.655; their shuffled controls 0.517, 0.521
    assert abs(control - 0.5) < 0.05
    assert table.loc[key, "cell_type_median_auroc"] > control + 0.1
    assert 0 <= table.loc[key, "null_annotated_fraction"] <= 0.25
    for fig in (
        sl.pl.alignment(adata, sae_key=key, return_fig=True),
        sl.pl.specificity(adata, sae_key=key, return_fig=True),
        sl.pl.feature_activation(adata, features=[0, 1], sae_key=key, basis="emb", return_fig=True),
        sl.pl.enrichment(adata, annotation_key=f"{key}_go", features=int(feats["n_terms"].to_numpy().argmax()), return_fig=True),
    ):
        assert fig is not None
    adata.write_h5ad(tmp_path / "b.h5ad")
    back = ad_.read_h5ad(tmp_path / "b.h5ad")
    assert back.uns[key]["features"]["label"].tolist() == feats["label"].tolist()


def test_compare_runs_side_by_side(runs):
    adata = runs.copy()
    keys = ["pca_baseline", "ica_baseline"]
    for key in keys:
        sl.tl.feature_specificity(adata, groupby="cell_type", sae_key=key)
    table = sl.tl.compare_runs(adata, sae_keys=keys)
    assert table.index.tolist() == keys and table["method"].tolist() == ["pca", "ica"]
    assert table.loc["pca_baseline", "fvu"] == pytest.approx(
        table.loc["ica_baseline", "fvu"], rel=1e-3
    )  # same 8-dim subspace
    assert "annotated_fraction" not in table.columns  # nothing annotated yet: left out, not made up
    with pytest.raises(ValueError, match="sae_keys is empty"):
        sl.tl.compare_runs(adata, sae_keys=[])


def test_get_sae_and_encode_refuse_a_baseline(runs):
    with pytest.raises(TypeError, match=r"is a baseline \(PCA\) written by `sl.tl.baseline_features`, not an SAE"):
        sl.get.sae(runs, sae_key="pca_baseline")
    with pytest.raises(TypeError, match="not an SAE"):
        sl.tl.encode(runs, sae=runs, sae_key="pca_baseline")


def test_bad_input(runs):
    with pytest.raises(ValueError, match="method must be one of"):
        sl.tl.baseline_features(runs, use_rep="X_emb", method="svd")
    with pytest.raises(ValueError, match=r"n_components must be between 1 and 16"):
        sl.tl.baseline_features(runs, use_rep="X_emb", n_components=17)
    with pytest.raises(ValueError, match=r"`adata.obsm\['X_emb'\]` or `adata.uns\['emb'\]` already exists"):
        sl.tl.baseline_features(runs, use_rep="X_emb", key_added="emb")
    with pytest.raises(KeyError, match=r"`adata.obsm\['X_scVI'\]` not found"):
        sl.tl.baseline_features(runs, use_rep="X_scVI")

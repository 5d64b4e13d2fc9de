"""sl.tl.feature_space and sl.get.feature_space: matrix, categories, summary, seeded UMAP, h5ad."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from biology_fixtures import add_go, categories_for, toy_with_sae

from sclens._warnings import SclensWarning
from sclens.get._feature_space import feature_space as get_feature_space
from sclens.tl._feature_space import feature_space


@pytest.fixture(scope="module")
def annotated():
    adata = add_go(toy_with_sae(n_cells=200))
    cats = categories_for(adata.uns["sae_go"]["results"])
    feature_space(adata, categories=cats)  # numba compiles UMAP once here
    return adata, cats


def test_matrix_categories_and_summary(annotated):
    adata, _ = annotated
    space = adata.uns["sae_go"]["feature_space"]
    res = adata.uns["sae_go"]["results"]
    np.testing.assert_array_equal(space["features"], np.arange(16))
    mat = space["matrix"].toarray()
    assert mat.shape == (16, res["term"].nunique())
    terms = list(space["terms"])
    for f, term in zip(res["feature"], res["term"], strict=True):
        assert mat[f, terms.index(term)] == 1
    assert mat.sum() == len(res.drop_duplicates(["feature", "term"]))
    kind = adata.uns["toy"]["program_kind"]
    assert (space["category"][kind == "local"] == "cellular process").all()
    # global features: 3 decoy terms (metabolic) beat 2 stimulus terms
    assert (space["category"][kind == "global"] == "metabolic process").all()
    s = space["summary"]
    n_terms = mat.sum(1)
    assert s["n_features_with_terms"] == 16
    assert s["n_unique_terms"] == len(terms)
    assert s["n_unique_terms_BP"] + s["n_unique_terms_MF"] == len(terms)
    assert s["n_unique_terms_MF"] == res.loc[res["namespace"] == "MF", "term"].nunique()
    assert s["terms_per_feature_mean"] == pytest.approx(n_terms.mean())
    assert s["terms_per_feature_sem"] == pytest.approx(n_terms.std(ddof=1) / 4)
    assert (s["terms_per_feature_min"], s["terms_per_feature_max"]) == (4, 5)
    top = space["top_terms"]
    assert top["term"].iloc[0] in {"GO:0009000", "GO:0009001"} and top["n_features"].iloc[0] == 8
    assert space["umap"].shape == (16, 2) and np.isfinite(space["umap"]).all()


def test_umap_reproducible_with_seed(annotated):
    adata, cats = annotated
    first = adata.uns["sae_go"]["feature_space"]["umap"].copy()
    again = feature_space(adata, categories=cats, copy=True).uns["sae_go"]["feature_space"]["umap"]
    np.testing.assert_array_equal(first, again)
    other = feature_space(adata, categories=cats, random_state=1, copy=True).uns["sae_go"]["feature_space"]["umap"]
    assert not np.allclose(first, other)
    params = adata.uns["sae_go"]["feature_space"]["params"]
    assert (params["n_neighbors"], params["min_dist"], params["spread"], params["random_state"]) == (10, 1.0, 10.0, 0)


def test_namespaces_and_categories_forms(annotated):
    adata, cats = annotated
    table = pd.DataFrame(list(cats.items()), columns=["term", "category"])
    bp = feature_space(adata, namespaces=["BP"], categories=table, copy=True)
    space = bp.uns["sae_go"]["feature_space"]
    assert set(space["term_namespace"]) == {"BP"}
    assert "n_unique_terms_MF" not in space["summary"]
    none = feature_space(adata, categories={}, copy=True).uns["sae_go"]["feature_space"]
    assert set(none["category"]) == {"unassigned"}


def test_features_level_anndata_round_trip(annotated, tmp_path):
    adata, _ = annotated
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    fs = get_feature_space(back)
    space = adata.uns["sae_go"]["feature_space"]
    assert fs.shape == space["matrix"].shape
    np.testing.assert_array_equal(fs.X.toarray(), space["matrix"].toarray())
    np.testing.assert_array_equal(fs.obsm["X_umap"], space["umap"])
    assert list(fs.obs_names) == [str(f) for f in space["features"]]
    assert fs.obs["kind"].tolist() == ["live"] * 16
    assert fs.var.loc["GO:0009000", "name"] == "response to interferon"
    assert fs.uns["summary"]["n_features_with_terms"] == 16


def test_bad_input(annotated):
    adata, cats = annotated
    bare = toy_with_sae(n_cells=50)
    no_annotation = r"`adata.uns\['sae_go'\]` not found; run `sl.tl.annotate_features\(adata, gene_sets=\.\.\., key_added='sae_go'\)`"
    with pytest.raises(KeyError, match=no_annotation):
        feature_space(bare)
    with pytest.raises(
        KeyError, match=r"run `sl.tl.feature_space\(adata, annotation_key='sae_go', key_added='feature_space'\)` first"
    ):
        get_feature_space(add_go(bare))
    with pytest.raises(ValueError, match="No annotated feature"):
        feature_space(adata, namespaces=["CC"], categories=cats)
    few = adata.copy()
    res = few.uns["sae_go"]["results"]
    few.uns["sae_go"]["results"] = res[res["feature"] < 3]
    with pytest.raises(ValueError, match="Only 3 annotated feature"):
        feature_space(few, categories=cats)
    with pytest.raises(TypeError, match="categories must be None, a GeneOntology"):
        feature_space(adata, categories=3)


def test_few_features_lower_n_neighbors(annotated):
    adata, cats = annotated
    few = adata.copy()
    res = few.uns["sae_go"]["results"]
    few.uns["sae_go"]["results"] = res[res["feature"] < 8]
    with pytest.warns(SclensWarning, match="using 7"):
        feature_space(few, categories=cats)
    assert few.uns["sae_go"]["feature_space"]["params"]["n_neighbors"] == 7


def test_default_categories_from_embedded_go():
    """``categories=None`` uses the embedded GO snapshot's first-level terms; unknown IDs are unassigned."""
    import sclens as sl
    from sclens.tl._feature_space import _category_table, _feature_categories

    if not hasattr(sl.datasets, "go_ontology"):
        pytest.skip("sl.datasets.go_ontology not available")
    terms = pd.Index(["GO:0005515", "GO:0006955", "GO:0042113", "GO:9999999"])
    table = _category_table(None, terms)
    assert set(table.loc[table["term"] == "GO:0042113", "category"]) == {"immune system process", "cellular process"}
    assert "GO:9999999" not in set(table["term"])
    from scipy import sparse

    # feature 0: B cell activation + immune response -> immune system process (2 votes); feature 1: unknown
    mat = sparse.csr_matrix(np.array([[0, 1, 1, 0], [0, 0, 0, 1]], dtype=np.float32))
    cats = _feature_categories(mat, terms, table)
    assert list(cats) == ["immune system process", "unassigned"]

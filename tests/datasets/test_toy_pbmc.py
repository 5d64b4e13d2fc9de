import anndata as ad
import numpy as np
import pytest

import sclens as sl


def test_toy_is_seeded_and_planted():
    a = sl.datasets.toy(n_cells=300, random_state=3)
    b = sl.datasets.toy(n_cells=300, random_state=3)
    c = sl.datasets.toy(n_cells=300, random_state=4)
    np.testing.assert_array_equal(a.obsm["X_emb"], b.obsm["X_emb"])
    assert not np.allclose(a.obsm["X_emb"], c.obsm["X_emb"])
    counts = a.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, np.rint(counts))
    # the embedding is the codes times the atoms, up to the stated noise
    resid = a.obsm["X_emb"] - a.obsm["X_codes"] @ a.uns["toy"]["atoms"]
    assert resid.std() == pytest.approx(a.uns["toy"]["params"]["noise"], rel=0.1)
    # local programs fire only in their own cell type
    kind, group = a.uns["toy"]["program_kind"], a.uns["toy"]["program_group"]
    for p in np.flatnonzero(kind == "local"):
        on = a.obsm["X_codes"][:, p] > 0
        assert set(a.obs["cell_type"][on]) == {group[p]}
    # a program's genes are up in the cells where it is on
    gs = a.uns["toy"]["gene_sets"]
    genes = gs.loc[gs["source"] == "program_00", "target"]
    idx = a.var_names.get_indexer(genes)
    on = a.obsm["X_codes"][:, 0] > 0
    frac = counts / counts.sum(1, keepdims=True)
    assert frac[on][:, idx].mean() > 1.5 * frac[~on][:, idx].mean()


def test_toy_h5ad_round_trip(tmp_path):
    a = sl.datasets.toy(n_cells=50)
    a.write_h5ad(tmp_path / "toy.h5ad")
    b = ad.read_h5ad(tmp_path / "toy.h5ad")
    np.testing.assert_array_equal(a.obsm["X_emb"], b.obsm["X_emb"])
    assert b.uns["toy"]["gene_sets"].equals(a.uns["toy"]["gene_sets"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cells": 0}, "n_cells must be >= 1"),
        ({"n_active_global": 9}, r"n_active_global \(9\) cannot exceed n_global \(8\)"),
        ({"n_genes": 50}, "need at least 160 genes"),
    ],
)
def test_toy_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sl.datasets.toy(**kwargs)


def test_pbmc68k_counts_inverts_raw():
    a = sl.datasets.pbmc68k_counts()
    assert a.shape == (700, 765)
    counts = a.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert counts.min() == 0
    # re-normalising the recovered counts reproduces the stored log-normalised values
    renorm = np.log1p(counts / a.obs["n_counts"].to_numpy()[:, None] * 1e4)
    np.testing.assert_allclose(renorm, a.X.toarray(), atol=0.01)
    assert "CD79A" in a.var_names
    b_cells = a.obs["bulk_labels"] == "CD19+ B"
    cd79a = counts[:, a.var_names.get_loc("CD79A")]
    assert cd79a[b_cells].mean() > 5 * cd79a[~b_cells].mean()

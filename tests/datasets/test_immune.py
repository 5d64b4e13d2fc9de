import numpy as np

import sclens as sl


def test_immune559_counts_are_raw_integer_counts():
    adata = sl.datasets.immune559_counts()
    assert adata.shape == (559, 9810)
    counts = adata.layers["counts"]
    assert counts.dtype == np.float32
    np.testing.assert_array_equal(counts.data, np.rint(counts.data))
    assert counts.data.min() >= 1
    # every kept gene is detected in at least 3 cells (the build rule)
    assert np.diff(counts.tocsc().indptr).min() >= 3
    np.testing.assert_allclose(adata.obs["n_counts"].to_numpy(), np.asarray(counts.sum(1)).ravel())
    # a full panel: markers of B cells, monocytes, NK and T cells are measured
    assert {"CD79A", "MS4A1", "LYZ", "CD14", "GNLY", "NKG7", "CD3E"} <= set(adata.var_names)
    assert adata.X is not counts


def test_pbmc4000_counts_are_the_built_counts():
    adata = sl.datasets.pbmc4000_counts()
    assert adata.shape == (4000, 16778)
    counts = adata.layers["counts"]
    assert counts.dtype == np.float32
    assert counts.has_canonical_format  # the delta-coded column indices decode to sorted, unique ones
    np.testing.assert_array_equal(counts.data, np.rint(counts.data))
    assert counts.data.min() >= 1
    assert np.diff(counts.tocsc().indptr).min() >= 3
    # the totals printed by scripts/build_pbmc_sample.py
    assert counts.nnz == 5_642_029
    assert counts.sum(dtype=np.float64) == 18_611_610
    np.testing.assert_allclose(adata.obs["n_counts"].to_numpy(), np.asarray(counts.sum(1)).ravel())
    assert adata.var_names.is_unique
    assert adata.var["gene_ids"].str.startswith("ENSG").all()
    assert adata.var["gene_ids"].is_unique
    assert adata.var.loc["CD79A", "gene_ids"] == "ENSG00000105369"
    assert adata.X is not counts


def test_pbmc4000_markers_sit_in_their_cell_types():
    adata = sl.datasets.pbmc4000_counts()
    counts, genes = adata.layers["counts"].tocsc(), adata.var_names

    def gene(name):
        return counts[:, genes.get_loc(name)].toarray().ravel()

    b_cells, t_cells, monocytes = gene("CD79A") >= 2, gene("CD3E") >= 2, gene("CD14") >= 2
    assert 500 < b_cells.sum() < 700
    assert 1500 < t_cells.sum() < 1900
    assert 400 < monocytes.sum() < 700
    # a B-cell marker measured separately from the one that picked the cells: ~30x higher in B cells
    assert gene("MS4A1")[b_cells].mean() > 3
    assert gene("MS4A1")[t_cells].mean() < 0.3
    assert gene("LYZ")[monocytes].mean() > 10 * gene("LYZ")[t_cells].mean()
    assert gene("CD3D")[t_cells].mean() > 5 * gene("CD3D")[b_cells].mean()

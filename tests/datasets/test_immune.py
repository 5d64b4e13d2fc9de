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

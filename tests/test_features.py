"""The one rule for ``features=`` (``sclens._features``), and the tools that follow it."""

import numpy as np
import pytest
from scipy import sparse

from sclens._features import check_live, live_features, resolve_features


def test_one_rule():
    acts = sparse.csr_matrix(np.array([[0, 1, 0, 2], [0, 3, 0, 0]], dtype=np.float32))
    live = live_features(acts)
    np.testing.assert_array_equal(live, [False, True, False, True])
    np.testing.assert_array_equal(resolve_features(None, 4, live=live), [1, 3])
    np.testing.assert_array_equal(resolve_features(np.int64(2), 4), [2])
    np.testing.assert_array_equal(resolve_features([3, 0], 4), [3, 0])  # order kept
    np.testing.assert_array_equal(resolve_features(np.array([1, 2]), None), [1, 2])
    with pytest.raises(ValueError, match=r"feature 4 is out of range: this SAE has 4 features \(0..3\)"):
        resolve_features([0, 4], 4)
    with pytest.raises(ValueError, match="feature -1 is out of range"):
        resolve_features(-1, None)
    with pytest.raises(ValueError, match=r"features has duplicates: \[1, 1\]; give each feature once"):
        resolve_features([1, 1], 4)
    with pytest.raises(ValueError, match="features is empty"):
        resolve_features([], 4)
    for bad in (True, "1", [1.0], [True]):
        with pytest.raises(TypeError, match="features must be a feature number"):
            resolve_features(bad, 4)
    with pytest.raises(ValueError, match="All 4 features are dead"):
        resolve_features(None, 4, live=np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match=r"Feature\(s\) \[0, 2\] are dead"):
        check_live(np.array([0, 1, 2]), live)
    stored_zero = sparse.csr_matrix((np.array([0.0], dtype=np.float32), ([0], [0])), shape=(2, 4))
    assert not live_features(stored_zero).any()  # an explicitly stored zero is not activity


def test_tools_share_the_rule(tmp_path):
    from biology_fixtures import toy_with_sae

    import sclens as sl

    adata = toy_with_sae(n_cells=200)
    msg = "features has duplicates"
    with pytest.raises(ValueError, match=msg):
        sl.pl.feature_activation(adata, features=[1, 1], basis="emb", show=False)
    with pytest.raises(ValueError, match=msg):
        sl.tl.annotate_features(adata, gene_sets=adata.uns["toy"]["gene_sets"], features=[1, 1], layer="counts")
    with pytest.raises(ValueError, match="feature 99 is out of range"):
        sl.pl.atlas(adata, tmp_path / "a.html", basis="emb", features=[99])

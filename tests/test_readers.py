"""The one checked reader of SAE runs (``sclens._readers.sae_run``) and the checks its callers ask for."""

import numpy as np
import pytest
from anndata import AnnData
from scipy import sparse

from sclens._readers import sae_run


def _run(**entries) -> AnnData:
    adata = AnnData(np.zeros((5, 3), dtype=np.float32))
    adata.obsm["X_sae"] = sparse.csr_matrix(np.ones((5, 4), dtype=np.float32))
    adata.uns["sae"] = {"params": {"use_rep": "X"}, "weights": {"W_dec": np.zeros((4, 3))}, **entries}
    return adata


def test_sae_run_checks_what_callers_ask_for():
    adata = _run()
    assert sae_run(adata, "sae", need=(), arrays=("W_dec",), activations=True) is adata.uns["sae"]
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]\['weights'\]\['W_enc'\]` not found; refit"):
        sae_run(adata, "sae", need=(), arrays=("W_enc",))
    with pytest.raises(KeyError, match=r"lacks \['metrics'\]"):
        sae_run(adata, "sae", need=("metrics",))
    del adata.obsm["X_sae"]
    assert sae_run(adata, "sae") is adata.uns["sae"]  # activations not asked for
    with pytest.raises(KeyError, match=r"No SAE run under key 'sae' \(it needs `adata.obsm\['X_sae'\]`"):
        sae_run(adata, "sae", need=(), activations=True)


def test_baseline_passes_unless_weights_are_needed():
    adata = _run()
    adata.uns["sae"] = {"params": {"source": "baseline_features", "method": "pca"}, "components": np.zeros((4, 3))}
    assert sae_run(adata, "sae", need=(), activations=True) is adata.uns["sae"]
    with pytest.raises(TypeError, match=r"is a baseline \(PCA\)"):
        sae_run(adata, "sae")


def _with_results() -> AnnData:
    """An SAE run with a specificity-like result stored in the one layout and an annotation."""
    import pandas as pd

    from sclens._readers import store_result

    adata = _run(run_id="run-1")
    store_result(adata, "alignment", key="alignment", parent="sae", tables={"table": pd.DataFrame({"f1": [0.5]})},
                 params={"groupby": ["cell_type"]})  # fmt: skip
    results = pd.DataFrame({"feature": [0], "term": ["GO:1"]})
    store_result(adata, "annotation", key="sae_go", parent=None, tables={"results": results}, params={"sae_key": "sae"})
    space = {"features": np.arange(1), "umap": np.zeros((1, 2)), "category": np.array(["x"])}
    store_result(adata, "feature_space", key="feature_space", parent="sae_go", tables=space, params={})
    return adata


def test_one_layout_records_run_ids_and_survives_h5ad(tmp_path):
    import anndata as ad

    from sclens._readers import result

    adata = _with_results()
    assert adata.uns["sae"]["alignment"]["params"]["sae_run_id"] == "run-1"
    assert adata.uns["sae"]["alignment"]["params"]["sae_key"] == "sae"
    ann_id = adata.uns["sae_go"]["run_id"]
    space = adata.uns["sae_go"]["feature_space"]["params"]
    assert (space["annotation_run_id"], space["annotation_key"], space["sae_run_id"]) == (ann_id, "sae_go", "run-1")
    adata.write_h5ad(tmp_path / "r.h5ad")
    back = ad.read_h5ad(tmp_path / "r.h5ad")
    assert result(back, "alignment", key="alignment", parent="sae")["table"]["f1"].tolist() == [0.5]
    assert result(back, "feature_space", key="feature_space", parent="sae_go")["category"].tolist() == ["x"]


def test_result_refuses_missing_stale_and_earlier_layouts():
    import pandas as pd

    from sclens._readers import result, store_result

    adata = _with_results()
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]\['nope'\]` not found; run `sl.tl.feature_alignment\("):
        result(adata, "alignment", key="nope", parent="sae")
    assert result(adata, "alignment", key="nope", parent="sae", missing_ok=True) is None
    adata.uns["sae"]["run_id"] = "run-2"  # the SAE was refitted
    rerun = r"Re-run `sl.tl.feature_alignment\(adata, groupby=\.\.\., sae_key='sae', key_added='alignment'\)`"
    with pytest.raises(ValueError, match=r"computed from SAE run run-1, .* now holds run run-2 .*stale\. " + rerun):
        result(adata, "alignment", key="alignment", parent="sae")
    adata = _with_results()
    store_result(adata, "annotation", key="sae_go", parent=None, tables={"results": adata.uns["sae_go"]["results"]},
                 params={"sae_key": "sae"})  # fmt: skip  # the annotation re-run: the space under it is stale
    adata.uns["sae_go"]["feature_space"] = _with_results().uns["sae_go"]["feature_space"]
    with pytest.raises(ValueError, match=r"from annotation run \w+, but `adata.uns\['sae_go'\]` now holds run"):
        result(adata, "feature_space", key="feature_space", parent="sae_go")
    # the layout before this one: a bare table and its params beside it
    adata.uns["sae"]["alignment"] = pd.DataFrame({"f1": [0.5]})
    adata.uns["sae"]["alignment_params"] = {"sae_run_id": "run-1"}
    with pytest.raises(ValueError, match=r"is a DataFrame without a 'params' dict: .* earlier sclens version .*" + rerun):
        result(adata, "alignment", key="alignment", parent="sae")
    store_result(adata, "alignment", key="alignment", parent="sae", tables={"table": pd.DataFrame()}, params={})
    assert "alignment_params" not in adata.uns["sae"]

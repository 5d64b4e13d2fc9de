"""annotation_null: planted programs pass, independent features and permuted data meet the null target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl
from sclens.tl._null import empirical_fdr

N_PLANTED, N_RANDOM = 16, 48


@pytest.fixture(scope="module")
def nulled():
    """16 planted program features + 48 features independent of expression, annotated, then nulled."""
    adata = sl.datasets.toy(n_cells=2000, n_genes=1000, genes_per_program=15, n_decoy_sets=40, random_state=0)
    rng = np.random.default_rng(0)
    freq = rng.uniform(0.05, 0.4, N_RANDOM)
    rand = np.where(rng.random((adata.n_obs, N_RANDOM)) < freq, rng.gamma(2, 1, (adata.n_obs, N_RANDOM)), 0)
    acts = sparse.hstack([adata.obsm["X_codes"], sparse.csr_matrix(rand)]).tocsr().astype(np.float32)
    adata.obsm["X_sae"] = acts
    table = pd.DataFrame({"kind": "live"}, index=[str(i) for i in range(acts.shape[1])])
    adata.uns["sae"] = {"params": {"architecture": "planted"}, "features": table, "run_id": "r0"}
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts")
    sl.tl.annotation_null(adata, gene_sets=gs, n_permutations=2)
    return adata


def test_planted_programs_annotated_with_low_fdr(nulled):
    table = nulled.uns["sae"]["annotation_null"].set_index("feature")
    planted = table.loc[range(N_PLANTED)]
    assert (planted["observed_terms"] > 0).mean() >= 0.95
    assert (planted["annotation_fdr"] < 0.05).all(), planted["annotation_fdr"].tolist()
    feats = nulled.uns["sae"]["features"]
    assert feats.loc["0", "annotation_fdr"] == pytest.approx(planted.loc[0, "annotation_fdr"])


def test_independent_features_and_permuted_activations_meet_null_target(nulled):
    """Features independent of expression: <= 5% called at annotation_fdr < 0.05 (0 of 48 measured).

    Uncalibrated, the default thresholds annotate 5 of these 48 (10%; 3.5% over 3 x 48 in other seeds)
    and 3.5 of 64 features per permutation of the cells: a random set of 20 high cells that happens to
    hold extra cells of one program up-regulates that program's genes together, which a gene-set test
    that treats genes as independent reads as enrichment. The permutation FDR calibrates that.
    """
    table = nulled.uns["sae"]["annotation_null"].set_index("feature")
    random = table.loc[range(N_PLANTED, N_PLANTED + N_RANDOM)]
    assert (random["annotation_fdr"] < 0.05).mean() <= 0.05
    assert (random["observed_terms"] > 0).mean() <= 0.15
    params = nulled.uns["sae"]["annotation_null_params"]
    assert params["null_cells_annotated"] / (N_PLANTED + N_RANDOM) <= 0.1
    assert params["null_genes_annotated"] / (N_PLANTED + N_RANDOM) <= 0.05
    assert params["summary"].startswith(f"annotated features: observed {params['n_annotated']} vs null ")
    assert params["sae_run_id"] == "r0" and params["seconds"] > 0
    assert table.index.tolist() == list(range(N_PLANTED + N_RANDOM))  # same features as the annotation


def test_empirical_fdr_is_a_monotone_ratio():
    observed = np.array([1e-10, 1e-3, 0.02, 1.0])
    null = np.array([[1e-4, 0.5, 1.0, 1.0], [0.01, 1.0, 1.0, 1.0]])
    # at p=1e-3: 0.5 null features (1 of 2 permutations) over 2 observed -> 0.25; at 0.02: 1 / 3
    np.testing.assert_allclose(empirical_fdr(observed, null), [0.0, 0.25, 1 / 3, 1.0])


def test_errors(nulled):
    gs = nulled.uns["toy"]["gene_sets"]
    with pytest.raises(KeyError, match=r"`adata.uns\['other_go'\]` not found; run `sl.tl.annotate_features"):
        sl.tl.annotation_null(nulled, gene_sets=gs, annotation_key="other_go")
    with pytest.raises(ValueError, match="nulls must be a non-empty list"):
        sl.tl.annotation_null(nulled, gene_sets=gs, nulls=["labels"])
    with pytest.raises(ValueError, match="n_permutations must be >= 1"):
        sl.tl.annotation_null(nulled, gene_sets=gs, n_permutations=0)

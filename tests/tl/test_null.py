"""annotation_null: planted programs pass, independent features and permuted data meet the null target."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl
from sclens.tl._trust._null import empirical_fdr

N_PLANTED, N_RANDOM = 16, 48


def planted_and_random(n_random: int, seed: int = 0):
    """Toy data with 16 planted program features + ``n_random`` features independent of expression."""
    adata = sl.datasets.toy(n_cells=2000, n_genes=1000, genes_per_program=15, n_decoy_sets=40, random_state=seed)
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.4, n_random)
    rand = np.where(rng.random((adata.n_obs, n_random)) < freq, rng.gamma(2, 1, (adata.n_obs, n_random)), 0)
    acts = sparse.hstack([adata.obsm["X_codes"], sparse.csr_matrix(rand)]).tocsr().astype(np.float32)
    adata.obsm["X_sae"] = acts
    table = pd.DataFrame({"kind": "live"}, index=[str(i) for i in range(acts.shape[1])])
    adata.uns["sae"] = {"params": {"architecture": "planted"}, "features": table, "run_id": "r0"}
    return adata


@pytest.fixture(scope="module")
def nulled():
    """16 planted program features + 48 features independent of expression, annotated, then nulled."""
    adata = planted_and_random(N_RANDOM)
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts")
    sl.tl.annotation_null(adata, gene_sets=gs, n_permutations=2)
    return adata


def test_default_thresholds_meet_null_target():
    """Issue 11's target at the default thresholds: <= 5 % of 200 features independent of expression are
    annotated, >= 95 % of the planted programs are.

    Measured: 1 of 200 (0 of 240 over three other seeds, ``benchmarks/null_calibration.py``), 16 of 16
    planted; pyDESeq2's dispersions without the moment floor (``estimator="pydeseq2"``): 76 of 200.
    With the earlier fixed dispersion shrinkage (weight 0.25 on the gene-wise estimate) 12 of 240 were
    (10 % of 48 in the ``nulled`` seed): the shrunk dispersions of a program's genes made a random set
    of 20 high cells with a few more of the program's cells look up-regulated in all of them.
    """
    adata = planted_and_random(200, seed=1)
    sl.tl.annotate_features(adata, gene_sets=adata.uns["toy"]["gene_sets"], layer="counts")
    annotated = adata.uns["sae"]["features"]["n_terms"].to_numpy() > 0
    assert annotated[:N_PLANTED].mean() >= 0.95
    assert annotated[N_PLANTED:].mean() <= 0.05, annotated[N_PLANTED:].sum()


def test_planted_programs_annotated_with_low_fdr(nulled):
    table = nulled.uns["sae"]["annotation_null"]["table"].set_index("feature")
    planted = table.loc[range(N_PLANTED)]
    assert (planted["observed_terms"] > 0).mean() >= 0.95
    assert (planted["annotation_fdr"] < 0.05).all(), planted["annotation_fdr"].tolist()
    feats = nulled.uns["sae"]["features"]
    assert feats.loc["0", "annotation_fdr"] == pytest.approx(planted.loc[0, "annotation_fdr"])


def test_independent_features_and_permuted_activations_meet_null_target(nulled):
    """Features independent of expression: <= 5 % annotated, and <= 5 % called at annotation_fdr < 0.05.

    Measured: 0 of 48 annotated, 0 under permuted activations and 0.5 of 64 under permuted gene labels.
    """
    table = nulled.uns["sae"]["annotation_null"]["table"].set_index("feature")
    random = table.loc[range(N_PLANTED, N_PLANTED + N_RANDOM)]
    assert (random["observed_terms"] > 0).mean() <= 0.05
    # an FDR only where there is a term to call (NaN < 0.05 would hold for any FDR the code computed)
    pd.testing.assert_series_equal(random["annotation_fdr"].isna(), random["observed_terms"].eq(0), check_names=False)
    params = nulled.uns["sae"]["annotation_null"]["params"]
    assert params["null_cells_annotated"] / (N_PLANTED + N_RANDOM) <= 0.05
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


def test_direction_activations_fire_as_often_as_the_features():
    from sclens.tl._trust._directions import direction_activations

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 8))
    freq = np.array([0.1, 0.0, 0.37, 0.02])
    act = direction_activations(emb, freq, np.array([5, 0, 2, 7]), 9, rng)
    assert act.shape == (500, 9)
    counts = np.diff(act.tocsc().indptr)
    np.testing.assert_array_equal(counts[[5, 0, 2, 7]], np.rint(freq * 500))
    assert counts.sum() == np.rint(freq * 500).sum()  # the other columns never fire
    assert (act.data > 0).all()


def test_random_directions_of_a_biological_embedding_are_annotated():
    """Item 5 of the scorecard issue: on toy data every direction of the embedding mixes planted programs.

    Measured (2 permutations): 32 of 32 directions annotated, 1.5-4.5 terms each (mean over the permutations),
    against 1-2 terms per planted feature; 0.5 of 32 features under permuted activations.
    """
    adata = planted_and_random(16)
    adata.uns["sae"]["params"]["use_rep"] = "X_emb"
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts")
    sl.tl.annotation_null(adata, gene_sets=gs, nulls=("cells", "directions"), n_permutations=2)
    table = adata.uns["sae"]["annotation_null"]["table"].set_index("feature")
    params = adata.uns["sae"]["annotation_null"]["params"]
    assert params["null_directions_annotated"] / 32 >= 0.9  # a random direction is annotated as readily ...
    assert params["null_cells_annotated"] / 32 <= 0.05  # ... as a planted program, a permuted feature is not
    planted = table.loc[range(N_PLANTED)]
    assert table["null_directions_terms"].mean() > 1.5 * planted["observed_terms"].mean()  # with more terms
    called = planted["observed_terms"] > 0
    np.testing.assert_allclose(
        planted.loc[called, "annotation_fdr"], planted.loc[called, ["cells_fdr", "directions_fdr"]].max(axis=1)
    )
    assert "random directions" in params["summary"]
    del adata.uns["sae"]["params"]["use_rep"]
    with pytest.raises(ValueError, match=r"does not name the embedding it was trained on"):
        sl.tl.annotation_null(adata, gene_sets=gs, nulls="directions", n_permutations=1)


def test_gene_sets_must_be_the_annotations(nulled, tmp_path):
    """Issue 23: a null on 6 of the annotation's sets compared 29 observed terms with a null of 0."""
    from sclens._network import as_network

    net = as_network(nulled.uns["toy"]["gene_sets"])
    some = net[net["source"].isin(net["source"].unique()[:6])]
    nulled.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    recorded = back.uns["sae_go"]["params"]["gene_sets"]["fingerprint"]
    assert recorded == nulled.uns["sae_go"]["params"]["gene_sets"]["fingerprint"] and len(recorded) == 64
    before = back.uns["sae"]["annotation_null"]["table"].copy()
    msg = r"gene_sets are not those of the annotation `adata.uns\['sae_go'\]`: 6 sets .* Pass the same `gene_sets`"
    with pytest.raises(ValueError, match=msg):
        sl.tl.annotation_null(back, gene_sets=some, n_permutations=1)
    pd.testing.assert_frame_equal(back.uns["sae"]["annotation_null"]["table"], before)

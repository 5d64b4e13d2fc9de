"""Term redundancy: information content, near-duplicate planted terms collapse, readable labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sclens as sl
from sclens.tl._annotation._enrich import gene_set_matrix
from sclens.tl._annotation._redundancy import information_content


def _with_duplicates(gs: pd.DataFrame) -> pd.DataFrame:
    """program_00 plus a superset (+3 genes of program_15) and a subset (7 of its genes) of it."""
    genes = gs.loc[gs["source"] == "program_00", "target"].tolist()
    extra = gs.loc[gs["source"] == "program_15", "target"].tolist()[:3]
    dups = [("dup_superset", g) for g in genes + extra] + [("dup_subset", g) for g in genes[:7]]
    return pd.concat([gs, pd.DataFrame(dups, columns=["source", "target"])], ignore_index=True)


@pytest.fixture(scope="module")
def annotated(toy_annot):
    adata = toy_annot.copy()
    gs = _with_duplicates(adata.uns["toy"]["gene_sets"])
    sl.tl.feature_specificity(adata, groupby="cell_type", sae_key="sae")
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", min_size=3, features=[0, 1, 9])
    return adata, gs


def test_information_content():
    gs = pd.DataFrame(
        {"source": ["root"] * 4 + ["mid"] * 2 + ["leaf"] + ["other"] * 2,
         "target": ["a", "b", "c", "d", "a", "b", "a", "x", "y"],
         "namespace": ["BP"] * 7 + ["MF"] * 2}
    )  # fmt: skip
    ic = information_content(gs)
    assert ic["root"] == pytest.approx(0.0)
    assert ic["mid"] == pytest.approx(np.log(2))
    assert ic["leaf"] == pytest.approx(np.log(4))
    assert ic["other"] == pytest.approx(0.0)  # the whole MF namespace


def test_gene_sets_carry_the_information_content_of_all_terms_given():
    """``GeneSets.ic`` (computed once per annotation) equals the groupby formula on the unrestricted sets."""
    rng = np.random.default_rng(0)
    pairs = [(f"T{t}", f"G{g}", ("BP", "MF", "CC")[t % 3]) for t in range(60) for g in rng.choice(300, 5 + t)]
    net = pd.DataFrame(pairs + pairs[:40], columns=["source", "target", "namespace"])  # with duplicate pairs
    size = net.groupby("source")["target"].nunique()
    ns = net.drop_duplicates("source").set_index("source")["namespace"]
    expected = np.log(ns.map(net.groupby("namespace")["target"].nunique()).reindex(size.index) / size).rename("ic")
    gs = gene_set_matrix(net, pd.Index([f"G{g}" for g in range(100)]), namespaces=["BP"])  # fewer genes, BP only
    pd.testing.assert_series_equal(gs.ic, expected, check_exact=True)
    assert gs.ic is gs.ic  # cached
    pd.testing.assert_series_equal(information_content(net), expected, check_exact=True)


def test_redundant_planted_terms_collapse_to_one_cluster(annotated):
    adata, _ = annotated
    res = adata.uns["sae_go"]["results"]
    f0 = res[res["feature"] == 0].set_index("term")
    assert {"program_00", "dup_superset", "dup_subset"} <= set(f0.index)
    assert f0.loc[["program_00", "dup_superset", "dup_subset"], "term_cluster"].nunique() == 1
    # the representative is the most specific (smallest) of the three
    reps = f0.index[f0["representative"] & (f0["term_cluster"] == f0.loc["program_00", "term_cluster"])]
    assert list(reps) == ["dup_subset"]
    table = adata.uns["sae"]["features"]
    assert table.loc["0", "n_term_clusters"] == res.loc[res["feature"] == 0, "term_cluster"].nunique()
    assert table.loc["0", "representative_term"] == "dup_subset"
    assert res.groupby("feature")["representative"].sum().to_dict() == (
        res.groupby("feature")["term_cluster"].nunique().to_dict()
    )


def test_label_has_term_genes_and_group(annotated):
    adata, gs = annotated
    table = adata.uns["sae"]["features"]
    term, genes, group = table.loc["0", "label"].split(" | ")
    assert term == "dup_subset"
    assert set(genes.split(", ")) <= set(gs.loc[gs["source"] == "program_00", "target"])
    assert group == "type_0"  # program 0 is local to type_0
    assert table.loc["5", "label"] == ""  # not annotated in this run


def test_global_label_names_no_group_and_labels_are_whole(annotated):
    from sclens.tl._annotation._redundancy import feature_labels

    adata, _ = annotated
    table = adata.uns["sae"]["features"]
    assert table.loc["9", "kind"] == "global"
    assert table.loc["9", "top_group"] != ""
    assert len(table.loc["9", "label"].split(" | ")) == 2  # term | genes, no group
    long = "positive regulation of transcription by RNA polymerase II in response to a long stimulus"
    res = adata.uns["sae_go"]["results"].copy()
    res.loc[res["feature"] == 0, "name"] = long
    labels = feature_labels(res, table, pd.Series({"0": "A, B, C"}))
    assert labels.loc["0", "label"] == f"{long} | A, B, C | type_0"


def test_term_redundancy_recomputes_with_other_threshold(annotated):
    adata, gs = annotated
    strict = sl.tl.term_redundancy(adata, gene_sets=gs, min_similarity=1.0, copy=True)
    res = strict.uns["sae_go"]["results"]
    n0 = int((res["feature"] == 0).sum())
    assert strict.uns["sae"]["features"].loc["0", "n_term_clusters"] == n0  # every term its own theme
    assert adata.uns["sae"]["features"].loc["0", "n_term_clusters"] < n0  # the original is untouched
    assert strict.uns["sae_go"]["params"]["min_similarity"] == 1.0
    assert adata.uns["sae_go"]["params"]["min_similarity"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="not in the gene sets given"):
        sl.tl.term_redundancy(adata, gene_sets=gs[~gs["source"].str.startswith("dup")])
    with pytest.raises(ValueError, match=r"min_similarity must be in \(0, 1\]"):
        sl.tl.term_redundancy(adata, gene_sets=gs, min_similarity=0)

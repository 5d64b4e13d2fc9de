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


def _random_sets(rng, n_terms: int, n_genes: int):
    """Gene sets with near-duplicates, nested pairs and exact copies (tied distances), as a terms x genes matrix."""
    from scipy import sparse

    base = [rng.choice(n_genes, rng.integers(1, 40), replace=False) for _ in range(n_terms // 2)]
    sets = list(base)
    for s in base[: n_terms - len(base)]:
        kind = rng.integers(3)
        if kind == 0:
            sets.append(s.copy())  # an exact copy: ties
        elif kind == 1:
            sets.append(s[: max(1, s.size // 2)])  # nested
        else:
            sets.append(np.union1d(s, rng.choice(n_genes, 3)))
    rows = np.repeat(np.arange(len(sets)), [s.size for s in sets])
    mat = sparse.csr_matrix((np.ones(rows.size), (rows, np.concatenate(sets))), shape=(len(sets), n_genes))
    return mat, pd.Index([f"T{t}" for t in range(len(sets))])


def _kept(rng, terms: pd.Index, n_features: int, mean_terms: float, shuffle: bool = False) -> pd.DataFrame:
    parts = []
    for f in range(n_features):
        n = int(rng.choice([0, 1, 2, 3, int(rng.poisson(mean_terms))]))
        picked = rng.choice(terms.size, min(n, terms.size), replace=False)
        parts.append(pd.DataFrame({"feature": f, "term": terms[picked], "pvalue": np.sort(rng.random(picked.size))}))
    res = pd.concat(parts, ignore_index=True)
    return res.sample(frac=1.0, random_state=0, ignore_index=True) if shuffle else res


def _assert_same_clusters(results, matrix, terms, ic, min_similarity):
    """``cluster_terms`` equals scipy's linkage run on each connected component (``redundancy_reference``)."""
    from redundancy_reference import cluster_terms_reference

    from sclens.tl._annotation._redundancy import cluster_terms

    new = cluster_terms(results, matrix, terms, ic, min_similarity=min_similarity)
    old = cluster_terms_reference(results, matrix, terms, ic, min_similarity=min_similarity, by_component=True)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    return new


@pytest.mark.parametrize("min_similarity", [0.05, 0.2, 0.5, 1.0])
def test_kernel_clusters_equal_the_reference_on_random_sets(min_similarity):
    """Ties (exact copies, equal ic), 0-3 term features, unsorted and interleaved tables, NaN ic."""
    rng = np.random.default_rng(1)
    matrix, terms = _random_sets(rng, 300, 120)
    ic = pd.Series(rng.integers(0, 4, terms.size).astype(float), index=terms)  # many ties
    ic.iloc[::17] = np.nan
    for shuffle in (False, True):
        new = _assert_same_clusters(_kept(rng, terms, 150, 25, shuffle), matrix, terms, ic, min_similarity)
        assert new["term_cluster"].max() > 0
    if min_similarity == 1.0:  # only identical gene sets share a cluster
        assert (new.groupby(["feature", "term_cluster"]).size() > 1).any()


def test_kernel_clusters_equal_the_reference_on_go():
    """GO BP (embedded snapshot): 120 features whose kept terms overlap most with a random program."""
    net = sl.datasets.go_gene_sets("human", namespaces=["BP"])
    gs = gene_set_matrix(net, pd.Index(net["target"].unique()))
    terms = pd.Index(gs.terms["term"].astype(str))
    rng = np.random.default_rng(2)
    program = np.zeros((120, gs.matrix.shape[1]))
    for f, t in enumerate(rng.integers(0, terms.size, 120)):
        genes = gs.matrix[t].indices
        program[f, rng.choice(genes, min(25, genes.size), replace=False)] = 1.0
    overlap = np.asarray((gs.matrix @ program.T).T)
    parts = []
    for f in range(120):
        n = int(rng.choice([0, 1, 2, int(rng.poisson(40)), int(rng.poisson(150))]))
        top = np.argsort(-(overlap[f] + rng.random(terms.size) * 0.5), kind="stable")[:n]
        parts.append(pd.DataFrame({"feature": f, "term": terms[top], "pvalue": np.arange(n) * 1e-6}))
    res = pd.concat(parts, ignore_index=True)
    new = _assert_same_clusters(res, gs.matrix, terms, gs.ic, 0.2)
    n_clusters = new.groupby("feature")["term_cluster"].max() + 1
    assert (n_clusters > 1).any()
    assert (n_clusters < new.groupby("feature").size()).any()


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered by first member (a partition's canonical form)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv]


def test_linkage_kernel_equals_scipy_with_ties():
    """The numba chain + flat cut equal ``fcluster(linkage(d, "average"), cut, "distance")`` on whole matrices.

    Jaccard distances of random sets with exact copies and nested sets (many exactly tied distances, which
    scipy's chain breaks in its own order) at cuts that some distances equal exactly (0.5, 0.75).
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    from sclens.tl._annotation._redundancy import _chain, _distances, _flat

    rng = np.random.default_rng(4)
    matrix, _ = _random_sets(rng, 300, 120)
    ptr, genes = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)
    count, start = np.zeros(matrix.shape[1], dtype=np.int64), np.full(matrix.shape[1], -1, dtype=np.int64)
    n_split = 0
    for _ in range(150):
        n = int(rng.integers(2, 60))
        dist = np.empty(n * (n - 1) // 2)
        _distances()(ptr, genes, rng.choice(300, n, replace=False).astype(np.int64), count, start, dist)
        for cut in (0.5, 0.75, 0.9):
            want = fcluster(linkage(dist, method="average"), t=cut, criterion="distance")
            got = np.empty(n, dtype=np.int64)
            _flat()(*_chain()(dist.copy(), n), n, cut, got)
            np.testing.assert_array_equal(_canonical(got), _canonical(want))
            n_split += 1 < want.max() < n
    assert n_split > 100  # most cuts give clusters of several terms, not all apart or all together


def test_clusters_by_component_equal_whole_linkage_without_ties():
    """Without tied distances, clustering each component on its own gives scipy's clusters of all terms.

    Blocks of terms close to each other (distances 0-1 within a block, > the cut across blocks), random
    continuous distances: the component split changes nothing.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from sclens.tl._annotation._redundancy import _labels

    rng = np.random.default_rng(5)
    for _ in range(40):
        block = rng.integers(0, int(rng.integers(1, 8)), int(rng.integers(2, 90)))
        square = np.where(block[:, None] == block[None, :], rng.random((block.size,) * 2), rng.uniform(0.81, 1.0))
        dist = squareform(np.triu(square, 1) + np.triu(square, 1).T, checks=False)
        want = fcluster(linkage(dist, method="average"), t=0.8, criterion="distance")
        np.testing.assert_array_equal(_canonical(_labels(dist.copy(), block.size, 0.8)), _canonical(want))


def test_term_clusters_hold_one_feature_at_a_time():
    """Peak memory follows the largest feature's term pairs, not all features' (the reverted kernel's 22.6 GB)."""
    import tracemalloc

    from sclens.tl._annotation._redundancy import cluster_terms

    rng = np.random.default_rng(3)
    matrix, terms = _random_sets(rng, 400, 200)
    ic = pd.Series(1.0, index=terms)
    one = pd.DataFrame({"feature": 0, "term": terms, "pvalue": np.linspace(0, 1, terms.size)})
    many = pd.concat([one.assign(feature=f) for f in range(60)], ignore_index=True)
    peaks = []
    for table in (one, many):
        cluster_terms(table, matrix, terms, ic, min_similarity=0.2)  # compiled before measuring
        tracemalloc.start()
        cluster_terms(table, matrix, terms, ic, min_similarity=0.2)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    pairs = terms.size * (terms.size - 1) // 2 * 8  # one feature's condensed distances: 0.64 MB
    assert peaks[0] > pairs  # the measurement sees the distances
    # 60 features: only the per-row columns grow (~140 bytes a row); all distances at once would add 38 MB
    assert peaks[1] < peaks[0] + 250 * (len(many) - len(one))

"""topGO's elim (``go_algorithm="elim"``) on planted ontologies, against hand-computed hypergeometric tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sclens as sl
from sclens.datasets import GeneOntology
from sclens.tl._annotation._elim import ELIM_CUTOFF, term_graph
from sclens.tl._annotation._enrich import gene_set_matrix, ora

GENES = pd.Index([f"g{i:04d}" for i in range(1000)])


def _ontology(edges: list[tuple[str, str]]) -> GeneOntology:
    ids = sorted({t for e in edges for t in e})
    terms = pd.DataFrame({"go_id": ids, "name": [f"term {t}" for t in ids], "namespace": "BP"})
    return GeneOntology(terms, pd.DataFrame(edges, columns=["child", "parent"]).assign(relation="is_a"))


def _ora(sets: dict[str, list[str]], edges, study_genes: list[list[str]], *, graph: bool = True) -> dict:
    """ORA of each study set (background: all genes), with the toy graph (elim) or without (classic)."""
    gs = gene_set_matrix(sets, GENES)
    if graph:
        gs.graph = term_graph(gs, _ontology(edges))
    study = np.stack([GENES.isin(s) for s in study_genes])
    res = ora(study, np.ones_like(study), gs, min_size=1, max_size=None)
    return {"terms": gs.terms["term"].tolist(), **res}


def _kept(res: dict, j: int, alpha: float = 0.05) -> set[str]:
    return {t for t, q in zip(res["terms"], res["padj"][:, j], strict=True) if q < alpha}


def _g(a: int, b: int) -> list[str]:
    return list(GENES[a:b])


# a parent P with two children C (planted) and S, under a root R; U elsewhere (noise). True path rule:
# every parent holds its children's genes.
C, S, P_OWN, R_OWN, U = _g(0, 20), _g(20, 40), _g(40, 60), _g(60, 300), _g(300, 330)
PLANTED = {"C": C, "S": S, "P": C + S + P_OWN, "R": C + S + P_OWN + R_OWN, "U": U}
PLANTED_EDGES = [("C", "P"), ("S", "P"), ("P", "R")]


def test_elim_keeps_the_planted_child_and_drops_parents_enriched_through_it():
    child_only = C[:15] + _g(500, 505)  # 15 of the child's 20 genes and 5 genes in no set
    child_and_parent = C[:15] + P_OWN[:12]  # the parent also enriched through genes of its own
    classic = _ora(PLANTED, PLANTED_EDGES, [child_only, child_and_parent], graph=False)
    elim = _ora(PLANTED, PLANTED_EDGES, [child_only, child_and_parent])
    assert _kept(classic, 0) == {"C", "P", "R"}
    assert _kept(elim, 0) == {"C"}
    assert _kept(classic, 1) == {"C", "P", "R"}
    assert _kept(elim, 1) == {"C", "P"}  # P keeps its own 12 hits; R has nothing left but P's
    i = {t: k for k, t in enumerate(elim["terms"])}
    np.testing.assert_array_equal(elim["n_overlap_elim"][[i["C"], i["P"], i["R"]], 0], [15, 0, 0])
    np.testing.assert_array_equal(elim["set_size_elim"][[i["C"], i["P"], i["R"]], 0], [20, 40, 280])
    np.testing.assert_array_equal(elim["n_overlap"][:, 0], classic["n_overlap"][:, 0])  # the term's own counts


# three levels: A > B > C3 and A > D; C3 significant, B not (once C3's genes are gone), D significant.
# A must lose the genes of C3 (a grandchild) and of D, even though B, between A and C3, is not significant.
A_OWN, B_OWN, C3, D = _g(0, 100), _g(100, 140), _g(140, 160), _g(160, 190)
TOY3 = {"A": A_OWN + B_OWN + C3 + D, "B": B_OWN + C3, "C3": C3, "D": D, "E": _g(190, 230)}
TOY3_EDGES = [("C3", "B"), ("B", "A"), ("D", "A")]
TOY3_STUDY = C3[:8] + D[:7] + B_OWN[:2] + A_OWN[:4] + _g(400, 429)  # 50 genes


def _hypergeom(members: list[str], removed: set[str], study: list[str]) -> tuple[float, int, int]:
    """By hand: the term's genes left after removal, their hits, and P(X >= hits) (universe and study whole)."""
    left = [g for g in members if g not in removed]
    hits = len(set(left) & set(study))
    p = stats.hypergeom.sf(hits - 1, len(GENES), len(left), len(study)) if hits else 1.0
    return p, hits, len(left)


def test_elim_equals_hand_computed_hypergeometric_on_a_three_level_dag():
    res = _ora(TOY3, TOY3_EDGES, [TOY3_STUDY])
    i = {t: k for k, t in enumerate(res["terms"])}
    p_c3, *_ = _hypergeom(TOY3["C3"], set(), TOY3_STUDY)
    p_d, *_ = _hypergeom(TOY3["D"], set(), TOY3_STUDY)
    assert p_c3 < ELIM_CUTOFF
    assert p_d < ELIM_CUTOFF
    expected = {
        "C3": _hypergeom(TOY3["C3"], set(), TOY3_STUDY),
        "D": _hypergeom(TOY3["D"], set(), TOY3_STUDY),
        "E": _hypergeom(TOY3["E"], set(), TOY3_STUDY),
        "B": _hypergeom(TOY3["B"], set(C3), TOY3_STUDY),
    }
    assert expected["B"][0] > ELIM_CUTOFF  # B is not significant once C3's genes are removed
    expected["A"] = _hypergeom(TOY3["A"], set(C3) | set(D), TOY3_STUDY)
    for term, (p, hits, size) in expected.items():
        assert res["pvalue"][i[term], 0] == pytest.approx(p, rel=1e-10), term
        assert res["n_overlap_elim"][i[term], 0] == hits, term
        assert res["set_size_elim"][i[term], 0] == size, term
    assert expected["A"][1:] == (6, 140)  # A's own 100 genes and B's own 40: 4 and 2 study genes
    np.testing.assert_allclose(res["padj"][:, 0], stats.false_discovery_control(res["pvalue"][:, 0]))
    # the classic test of the same terms is the whole-term hypergeometric
    classic = _ora(TOY3, TOY3_EDGES, [TOY3_STUDY], graph=False)
    assert classic["pvalue"][i["A"], 0] == pytest.approx(_hypergeom(TOY3["A"], set(), TOY3_STUDY)[0], rel=1e-10)


def test_elim_processes_many_contrasts_as_one_at_a_time():
    rng = np.random.default_rng(3)
    studies = [list(rng.choice(GENES[:300], 40, replace=False)) for _ in range(6)] + [TOY3_STUDY]
    together = _ora(TOY3, TOY3_EDGES, studies)
    for j, study in enumerate(studies):
        alone = _ora(TOY3, TOY3_EDGES, [study])
        np.testing.assert_array_equal(together["pvalue"][:, j], alone["pvalue"][:, 0])
        np.testing.assert_array_equal(together["n_overlap_elim"][:, j], alone["n_overlap_elim"][:, 0])


def test_term_graph_refuses_gene_sets_without_go_terms():
    gs = gene_set_matrix({"mine": _g(0, 10)}, GENES)
    with pytest.raises(ValueError, match=r"go_algorithm='elim' needs GO term IDs.*use go_algorithm='classic'"):
        term_graph(gs, _ontology(TOY3_EDGES))


def _go_named(gsets: pd.DataFrame) -> pd.DataFrame:
    """The toy's gene sets with program 0 as "B cell receptor signaling pathway" and, as its GO parent
    "antigen receptor-mediated signaling pathway", the union of programs 0 and 2 (true path rule)."""
    p0 = gsets.loc[gsets["source"] == "program_00", "target"].tolist()
    p2 = gsets.loc[gsets["source"] == "program_02", "target"].tolist()
    rest = gsets[~gsets["source"].isin(["program_00", "program_02"])].astype(str)
    go = pd.DataFrame({"source": ["GO:0050853"] * len(p0) + ["GO:0050851"] * (len(p0) + len(p2)),
                       "target": p0 + p0 + p2})  # fmt: skip
    return pd.concat([go, rest[["source", "target"]]], ignore_index=True)


def test_annotate_features_elim_drops_the_parent_enriched_through_the_child(toy_annot_copy):
    """The embedded GO graph end to end: feature 0 (program 0) keeps the child only, feature 2 the parent."""
    ad = toy_annot_copy
    sets = _go_named(ad.uns["toy"]["gene_sets"])
    kept = {}
    for algo in ("classic", "elim"):
        sl.tl.annotate_features(ad, gene_sets=sets, layer="counts", features=[0, 2], min_size=3, go_algorithm=algo,
                                key_added=f"go_{algo}")  # fmt: skip
        res = ad.uns[f"go_{algo}"]["results"]
        kept[algo] = {f: set(res.loc[res["feature"] == f, "term"]) & {"GO:0050853", "GO:0050851"} for f in (0, 2)}
        assert ad.uns[f"go_{algo}"]["params"]["go_algorithm"] == algo
    assert kept["classic"] == {0: {"GO:0050853", "GO:0050851"}, 2: {"GO:0050851"}}
    assert kept["elim"] == {0: {"GO:0050853"}, 2: {"GO:0050851"}}
    assert {"n_overlap_elim", "set_size_elim"} <= set(ad.uns["go_elim"]["results"].columns)
    assert "n_overlap_elim" not in ad.uns["go_classic"]["results"].columns


def test_go_algorithm_bad_input(toy_annot_copy):
    ad = toy_annot_copy
    before = set(ad.uns)
    with pytest.raises(ValueError, match="go_algorithm must be 'classic' or 'elim', got 'weight'"):
        sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", go_algorithm="weight")
    with pytest.raises(ValueError, match="go_algorithm='elim' needs GO term IDs"):
        sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", go_algorithm="elim")
    assert set(ad.uns) == before


def test_annotation_null_reruns_the_annotation_with_elim(toy_annot_copy, monkeypatch):
    """The null repeats the observed run's rule: with elim, every null annotation walks the GO graph too."""
    from sclens.tl._annotation import _annotate

    ad = toy_annot_copy
    sets = _go_named(ad.uns["toy"]["gene_sets"])
    sl.tl.annotate_features(ad, gene_sets=sets, layer="counts", features=[0, 2], min_size=3, go_algorithm="elim")
    calls = []
    monkeypatch.setattr(_annotate, "term_graph", lambda gs, onto: calls.append(1) or term_graph(gs, onto))
    sl.tl.annotation_null(ad, gene_sets=sets, n_permutations=2, nulls=("cells", "genes"))
    assert len(calls) == 4
    assert ad.uns["sae"]["annotation_null"]["table"]["feature"].tolist() == [0, 2]

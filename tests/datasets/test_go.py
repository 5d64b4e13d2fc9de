"""The embedded human GO snapshot: counts from the build script, known terms, propagation, errors."""

from __future__ import annotations

import json
import time
from importlib import resources

import pandas as pd
import pytest

import sclens as sl
import sclens._network
from sclens.datasets._snapshot import SNAPSHOT, load_snapshot


@pytest.fixture(scope="module")
def metadata():
    ref = resources.files("sclens.datasets").joinpath("data", f"{SNAPSHOT}.json")
    return json.loads(ref.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def go_bp():
    return sl.datasets.go_gene_sets(namespaces=("BP",))


def test_snapshot_files_ship_inside_the_package():
    data = resources.files("sclens.datasets").joinpath("data")
    names = {p.name for p in data.iterdir()}
    for table in ("terms", "edges", "annotations", "aliases"):
        assert f"{SNAPSHOT}.{table}.tsv.gz" in names
    assert "README.md" in names
    snapshot = [n for n in names if n.startswith(SNAPSHOT)]
    assert sum(len(data.joinpath(n).read_bytes()) for n in snapshot) < 5e6  # "a few MB at most"
    # with the real cells of sl.datasets (immune559, pbmc4000) the wheel's data stays under 12 MB
    assert sum(len(data.joinpath(n).read_bytes()) for n in names) < 12e6


def test_provenance_and_raw_counts_match_build_script(metadata):
    assert metadata["go_release"] == "2022-07-01"
    assert metadata["annotation_date"] == "2022-Sep12"
    assert "CC BY 4.0" in metadata["licence"]
    ontology, annotations, aliases, meta = load_snapshot()
    counts = metadata["counts"]
    assert {ns: int((ontology.terms["namespace"] == ns).sum()) for ns in ("BP", "MF", "CC")} == counts["n_terms"]
    assert {r: int((ontology.edges["relation"] == r).sum()) for r in ("is_a", "part_of")} == counts["n_edges"]
    assert len(annotations) == counts["n_annotations"]
    assert annotations["symbol"].nunique() == counts["n_genes"]
    assert len(aliases) == counts["n_aliases"]
    # numbers printed by scripts/build_go_snapshot.py on the Debian 3.16.0-1 packages
    assert counts["n_terms"] == {"BP": 28140, "MF": 11238, "CC": 4180}
    assert counts["n_genes"] == 20728


@pytest.mark.parametrize("ns", ["BP", "MF", "CC"])
def test_default_gene_sets_match_build_script(metadata, ns):
    net = sl.datasets.go_gene_sets(namespaces=(ns,))
    expected = metadata["default_gene_sets"][ns]
    assert net["source"].nunique() == expected["n_sets"]
    assert len(net) == expected["n_pairs"]
    assert net["target"].nunique() == expected["n_genes"]
    sizes = net.groupby("source", observed=True).size()
    assert sizes.min() >= 15
    assert sizes.max() <= 500
    assert set(net["namespace"]) == {ns}


def test_table_layout_and_provenance(go_bp):
    assert list(go_bp.columns) == ["source", "target", "name", "namespace"]
    assert all(isinstance(go_bp[c].dtype, pd.CategoricalDtype) for c in go_bp.columns)
    assert not go_bp.duplicated(["source", "target"]).any()
    assert go_bp.attrs["go_release"] == "2022-07-01"
    net = sclens._network.as_network(go_bp)
    assert set(net.columns) >= {"source", "target", "name", "namespace"}


def test_b_cell_activation_contains_known_and_child_genes(go_bp):
    sets = go_bp.groupby("source", observed=True)["target"].agg(set)
    b_cell = sets["GO:0042113"]
    assert go_bp.loc[go_bp["source"] == "GO:0042113", "name"].iloc[0] == "B cell activation"
    # directly annotated in gene2go (MS4A1 IDA, CD79A ISS) and via children such as
    # GO:0050853 B cell receptor signaling pathway (CD79B, CD19, BLK, SYK)
    assert {"CD79A", "MS4A1", "CD79B", "CD19", "BTK", "CD40"} <= b_cell
    onto = sl.datasets.go_ontology()
    children = onto.children("GO:0042113")
    assert "GO:0030183" in children  # B cell differentiation is_a B cell activation
    for child in children:
        if child in sets.index:
            assert sets[child] <= b_cell, child
    # true path rule up to lymphocyte activation
    assert b_cell <= sets["GO:0046649"]


def test_propagate_false_and_evidence_filter():
    direct = sl.datasets.go_gene_sets(namespaces=("BP",), propagate=False, min_size=1, max_size=100000)
    b_direct = set(direct.loc[direct["source"] == "GO:0042113", "target"])
    assert {"CD79A", "MS4A1"} <= b_direct
    assert "CD19" not in b_direct  # CD19 is annotated to child terms only
    no_iss = sl.datasets.go_gene_sets(
        namespaces=("BP",), propagate=False, min_size=1, max_size=100000, evidence_exclude=("ND", "ISS")
    )
    b_no_iss = set(no_iss.loc[no_iss["source"] == "GO:0042113", "target"])
    assert "MS4A1" in b_no_iss
    assert "CD79A" not in b_no_iss  # its only direct B cell activation evidence is ISS


def test_loading_is_fast_and_returns_copies():
    start = time.perf_counter()
    first = sl.datasets.go_gene_sets()
    second = sl.datasets.go_gene_sets()
    assert time.perf_counter() - start < 10  # ~1 s on one core; generous for a busy CI machine
    first.loc[0, "namespace"] = "MF" if first.loc[0, "namespace"] != "MF" else "CC"
    assert not first.equals(second)
    assert sl.datasets.go_gene_sets().equals(second)


def test_ontology_queries():
    onto = sl.datasets.go_ontology()
    assert onto.release == "2022-07-01"
    assert onto.name("GO:0042113") == "B cell activation"
    assert onto.namespace("GO:0042113") == "BP"
    assert "GO:0046649" in onto.parents("GO:0042113")
    ancestors = onto.ancestors("GO:0042113")
    assert {"GO:0046649", "GO:0045321", "GO:0002376", "GO:0008150"} <= set(ancestors)
    assert "GO:0042113" not in ancestors
    assert onto.root("GO:0005886") == "GO:0005575"
    assert onto.first_level("GO:0042113") == ["GO:0002376", "GO:0009987"]
    assert onto.first_level("GO:0008150") == []
    table = onto.first_level_table(["GO:0042113", "GO:0005886"])
    assert set(table.loc[table["term"] == "GO:0042113", "first_level_name"]) == {
        "immune system process",
        "cellular process",
    }
    assert onto.depth["GO:0008150"] == 0
    assert onto.depth["GO:0042113"] >= 3
    with pytest.raises(KeyError, match="GO term 'GO:9999999' is not in this ontology"):
        onto.name("GO:9999999")


def test_aliases_available():
    aliases = sl.datasets.gene_aliases()
    assert list(aliases.columns) == ["alias", "symbol"]
    assert "MS4A1" in set(aliases.loc[aliases["alias"] == "CD20", "symbol"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"organism": "yeast"}, ValueError, "Unknown organism 'yeast'"),
        ({"organism": "mouse"}, ValueError, "embedded GO snapshot covers human only"),
        ({"namespaces": ("BP", "XX")}, ValueError, "Unknown GO namespace 'XX'"),
        ({"source": "internet"}, ValueError, "Unknown source 'internet'"),
        ({"release": "2020-01-01"}, ValueError, "embedded GO snapshot is release 2022-07-01"),
        (
            {"min_size": 19800, "max_size": 30000},
            ValueError,
            "No GO term in namespaces .* min_size=19800 .*the largest term has 19761 genes",
        ),
        ({"min_size": 50, "max_size": 10}, ValueError, "min_size \\(50\\) is larger than max_size"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        sl.datasets.go_gene_sets(**kwargs)

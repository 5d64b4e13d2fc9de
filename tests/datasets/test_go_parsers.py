"""OBO and GAF readers and propagation on small hand-written files (tests/data/mini.*)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from sclens.datasets._gaf import read_gaf
from sclens.datasets._go import build_gene_sets
from sclens.datasets._obo import read_obo

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def onto():
    return read_obo(DATA / "mini.obo")


def _sets(net):
    return {k: sorted(v) for k, v in net.groupby("source", observed=True)["target"].agg(set).items()}


def test_obo_terms_and_parents(onto):
    assert onto.release == "2099-01-01"
    assert len(onto) == 11  # obsolete GO:0000006 skipped
    assert "GO:0000006" not in onto
    assert onto.name("GO:0000010") == "kinase activity #1"
    assert onto.namespace("GO:0000020") == "CC"
    assert onto.parents("GO:0000003") == ["GO:0000001", "GO:0000002"]
    assert onto.parents("GO:0000005") == ["GO:0000004"]  # part_of
    assert onto.parents("GO:0000007") == ["GO:0000001"]  # regulates is not followed
    assert onto.parents("GO:0000010") == ["GO:0003674"]  # trailing {modifier} ! comment stripped
    assert onto.children("GO:0008150") == ["GO:0000001", "GO:0000002"]
    assert onto.ancestors("GO:0000005") == ["GO:0000001", "GO:0000002", "GO:0000003", "GO:0000004", "GO:0008150"]
    assert onto.descendants("GO:0000003") == ["GO:0000004", "GO:0000005"]
    assert onto.alt_ids == {"GO:0000099": "GO:0000003"}
    assert onto.name("GO:0000099") == "lymphocyte activation"
    assert onto.first_level("GO:0000005") == ["GO:0000001", "GO:0000002"]
    assert onto.first_level("GO:0000002") == ["GO:0000002"]
    assert onto.depth.to_dict()["GO:0000005"] == 4


def test_gaf_reader_drops_not_and_reads_aliases():
    ann, aliases, header = read_gaf(DATA / "mini.gaf")
    assert header["date-generated"] == "2099-01-02"
    assert "FOO" not in set(ann["symbol"])  # NOT|involved_in
    assert len(ann) == 8
    assert dict(zip(aliases["alias"], aliases["symbol"], strict=True)) == {
        "CD20": "MS4A1",
        "IGA": "CD79A",
        "KIN-1": "KIN1",
        "MB1": "CD79A",
    }


def test_gaf_reader_gzip_and_truncated(tmp_path):
    gz = tmp_path / "mini.gaf.gz"
    with open(DATA / "mini.gaf", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert len(read_gaf(gz)[0]) == 8
    bad = tmp_path / "bad.gaf"
    bad.write_text("!gaf-version: 2.2\nUniProtKB\tP1\tCD79A\tinvolved_in\n")
    with pytest.raises(ValueError, match="has 4 tab-separated columns, expected at least 15"):
        read_gaf(bad)


def test_propagation_true_path_rule(onto):
    ann, _, _ = read_gaf(DATA / "mini.gaf")
    net = build_gene_sets(onto, ann, min_size=1, max_size=100)
    assert _sets(net) == {
        "GO:0008150": ["BTK", "CD79A", "MS4A1", "REG1"],
        "GO:0000001": ["BTK", "CD79A", "MS4A1", "REG1"],
        "GO:0000002": ["BTK", "CD79A", "MS4A1"],
        "GO:0000003": ["BTK", "CD79A", "MS4A1"],  # BTK via alt_id GO:0000099
        "GO:0000004": ["CD79A", "MS4A1"],  # CD79A via part_of; REG1 (regulates) not
        "GO:0000005": ["CD79A"],
        "GO:0000007": ["REG1"],
        "GO:0003674": ["KIN1"],
        "GO:0000010": ["KIN1"],
        "GO:0005575": ["MEM1"],
        "GO:0000020": ["MEM1"],
    }
    assert net.loc[net["source"] == "GO:0000004", "name"].iloc[0] == "B cell activation"
    assert set(net.loc[net["source"] == "GO:0000020", "namespace"]) == {"CC"}


def test_propagation_options(onto):
    ann, _, _ = read_gaf(DATA / "mini.gaf")
    with_nd = build_gene_sets(onto, ann, namespaces=("BP",), min_size=1, max_size=100, evidence_exclude=())
    assert "ND1" in _sets(with_nd)["GO:0008150"]
    direct = build_gene_sets(onto, ann, namespaces=("BP",), min_size=1, max_size=100, propagate=False)
    assert _sets(direct) == {
        "GO:0000003": ["BTK"],
        "GO:0000004": ["MS4A1"],
        "GO:0000005": ["CD79A"],
        "GO:0000007": ["REG1"],
    }
    sized = build_gene_sets(onto, ann, min_size=3, max_size=3)
    assert sorted(_sets(sized)) == ["GO:0000002", "GO:0000003"]
    with pytest.raises(ValueError, match="No GO term in namespaces \\['MF'\\] has between min_size=2"):
        build_gene_sets(onto, ann, namespaces=("MF",), min_size=2, max_size=10)


def test_obo_errors(tmp_path):
    not_obo = tmp_path / "x.obo"
    not_obo.write_text("format-version: 1.2\n")
    with pytest.raises(ValueError, match="No \\[Term\\] stanza found"):
        read_obo(not_obo)
    malformed = tmp_path / "y.obo"
    malformed.write_text("[Term]\nid: GO:1\nthis line has no colon\n")
    with pytest.raises(ValueError, match="Malformed OBO line 3"):
        read_obo(malformed)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_obo(tmp_path / "missing.obo")

"""read_bioconductor_go on tiny SQLite files with the GO.db / org.Hs.eg.db schema."""

from __future__ import annotations

import sqlite3

import pytest

import sclens as sl

TERMS = [
    (1, "GO:0008150", "biological_process", "BP"),
    (2, "GO:0000001", "cellular process", "BP"),
    (3, "GO:0000004", "B cell activation", "BP"),
    (4, "GO:0000005", "B cell receptor signaling pathway", "BP"),
    (5, "GO:0000007", "regulation of B cell activation", "BP"),
    (6, "all", "all", "universal"),
]
PARENTS = [(1, 6, "isa"), (2, 1, "isa"), (3, 2, "isa"), (4, 3, "part of"), (5, 3, "regulates"), (5, 2, "isa")]
GENES = [(1, "CD79A"), (2, "MS4A1"), (3, "REG1"), (4, "ND1")]
GO_BP = [(1, "GO:0000005", "IDA"), (2, "GO:0000004", "IDA"), (3, "GO:0000007", "IMP"), (4, "GO:0008150", "ND")]


@pytest.fixture
def bioc(tmp_path):
    go_db, org_db = tmp_path / "GO.sqlite", tmp_path / "org.Xx.eg.sqlite"
    con = sqlite3.connect(go_db)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [("GOSOURCEDATE", "2099-01-01")])
    con.execute("CREATE TABLE go_term (_id INTEGER, go_id TEXT, term TEXT, ontology TEXT)")
    con.executemany("INSERT INTO go_term VALUES (?, ?, ?, ?)", TERMS)
    for ns in ("bp", "mf", "cc"):
        con.execute(f"CREATE TABLE go_{ns}_parents (_id INTEGER, _parent_id INTEGER, relationship_type TEXT)")
    con.executemany("INSERT INTO go_bp_parents VALUES (?, ?, ?)", PARENTS)
    con.commit()
    con.close()
    con = sqlite3.connect(org_db)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [("GOEGSOURCEDATE", "2099-Jan02"), ("ORGANISM", "X x")])
    con.execute("CREATE TABLE gene_info (_id INTEGER, gene_name TEXT, symbol TEXT)")
    con.executemany("INSERT INTO gene_info VALUES (?, '', ?)", GENES)
    for ns in ("bp", "mf", "cc"):
        con.execute(f"CREATE TABLE go_{ns} (_id INTEGER, go_id TEXT, evidence TEXT)")
    con.executemany("INSERT INTO go_bp VALUES (?, ?, ?)", GO_BP)
    con.execute("CREATE TABLE alias (_id INTEGER, alias_symbol TEXT)")
    con.executemany("INSERT INTO alias VALUES (?, ?)", [(2, "CD20"), (2, "MS4A1")])
    con.commit()
    con.close()
    return go_db, org_db


def test_read_bioconductor_go(bioc):
    go_db, org_db = bioc
    net = sl.datasets.read_bioconductor_go(go_db=go_db, org_db=org_db, min_size=1, max_size=10)
    sets = {k: sorted(v) for k, v in net.groupby("source", observed=True)["target"].agg(set).items()}
    assert sets == {
        "GO:0008150": ["CD79A", "MS4A1", "REG1"],
        "GO:0000001": ["CD79A", "MS4A1", "REG1"],
        "GO:0000004": ["CD79A", "MS4A1"],  # part_of followed, regulates not
        "GO:0000005": ["CD79A"],
        "GO:0000007": ["REG1"],
    }
    assert net.attrs["go_release"] == "2099-01-01"
    assert net.attrs["annotation_date"] == "2099-Jan02"
    assert net.attrs["gene_set_source"] == "GO (Bioconductor)"


def test_read_bioconductor_go_bad_files(bioc, tmp_path):
    go_db, org_db = bioc
    with pytest.raises(FileNotFoundError, match="GO.db SQLite file .* not found"):
        sl.datasets.read_bioconductor_go(go_db=tmp_path / "nope.sqlite", org_db=org_db)
    with pytest.raises(ValueError, match="does not look like a org.\\*.eg.db SQLite file"):
        sl.datasets.read_bioconductor_go(go_db=go_db, org_db=go_db)

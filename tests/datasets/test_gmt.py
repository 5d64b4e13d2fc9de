"""GMT reading and writing: descriptions with spaces, exact round trips, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

import sclens as sl
from sclens._network import as_network

DATA = Path(__file__).parents[1] / "data"


def test_read_gmt_with_spaces_blank_lines_and_trailing_tabs():
    net = sl.datasets.read_gmt(path=DATA / "mini.gmt")
    assert list(net.columns) == ["source", "target", "name"]
    assert net["source"].unique().tolist() == ["SET_A", "SET_B", "SET C with spaces"]
    assert net.loc[net["source"] == "SET_A", "target"].tolist() == ["CD79A", "MS4A1", "CD19"]
    assert net.loc[net["source"] == "SET_A", "name"].iloc[0] == "B cell genes from a hand-written list"
    assert net.loc[net["source"] == "SET_B", "name"].iloc[0] == "http://example.org/set b"
    assert net.loc[net["source"] == "SET_B", "target"].tolist() == ["CD3E", "CD3D"]  # trailing tab ignored
    assert net.loc[net["source"] == "SET C with spaces", "target"].tolist() == ["NKG7", "GNLY"]  # dup kept once
    assert len(net) == 7
    assert as_network(DATA / "mini.gmt").equals(as_network(net))  # a path is accepted anywhere


def test_gmt_round_trip_is_exact(tmp_path):
    first = tmp_path / "a.gmt"
    canonical = (
        "SET_A\tB cell genes from a hand-written list\tCD79A\tMS4A1\tCD19\n"
        "SET_B\thttp://example.org/set b\tCD3E\tCD3D\n"
        "SET C with spaces\t\tNKG7\tGNLY\n"
    )
    first.write_text(canonical)
    net = sl.datasets.read_gmt(path=first)
    second = tmp_path / "b.gmt"
    sl.datasets.write_gmt(gene_sets=net, path=second)
    assert second.read_text() == canonical
    assert sl.datasets.read_gmt(path=second).equals(net)
    # normalised on the way: blank line, trailing tab and duplicate gene of mini.gmt disappear
    third = tmp_path / "c.gmt"
    sl.datasets.write_gmt(gene_sets=DATA / "mini.gmt", path=third)
    assert third.read_text() == canonical


def test_write_gmt_from_dict_and_go_table(tmp_path):
    path = tmp_path / "d.gmt"
    sl.datasets.write_gmt(gene_sets={"up": ["A", "B"], "down": ["C"]}, path=path)
    assert path.read_text() == "up\tup\tA\tB\ndown\tdown\tC\n"
    go = sl.datasets.go_gene_sets(namespaces=("CC",), min_size=400, max_size=500)
    sl.datasets.write_gmt(gene_sets=go, path=path)
    back = sl.datasets.read_gmt(path=path)
    assert len(back) == len(go)
    first_term = str(go["source"].iloc[0])
    assert back.loc[back["source"] == first_term, "name"].iloc[0] == str(go["name"].iloc[0])
    assert set(back.loc[back["source"] == first_term, "target"]) == set(
        go.loc[go["source"] == first_term, "target"].astype(str)
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("A\tdesc\tG1\nB\tdesc\tG2\nA\tother\tG3\n", "Duplicate gene-set name 'A' .* \\(lines 1 and 3\\)"),
        ("A desc G1 G2\n", "GMT line 1 .* has 1 tab-separated field\\(s\\).*separates fields by spaces"),
        ("A\tdesc\t\t\n", "Gene set 'A' on GMT line 1 .* has no genes"),
        ("\n\n", "contains no gene set"),
        ("\tdesc\tG1\n", "GMT line 1 .* has an empty set name"),
    ],
)
def test_read_gmt_bad_files(tmp_path, text, match):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        sl.datasets.read_gmt(path=path)

"""The pinned-release download path, exercised offline through file:// URLs."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
from pathlib import Path

import pytest

import sclens as sl
from sclens.datasets import _download, _go

DATA = Path(__file__).parents[1] / "data"
RELEASE = "2099-01-01"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _clear_caches():
    _download.load_go_release.cache_clear()
    _download.load_go_ontology.cache_clear()
    _go._cached_gene_sets.cache_clear()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'release server' with the hand-written files and a registry pinned to their hashes."""
    server = tmp_path / "server"
    server.mkdir()
    shutil.copy(DATA / "mini.obo", server / "go-basic.obo")
    with open(DATA / "mini.gaf", "rb") as src, gzip.open(server / "goa_human.gaf.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    files = {
        name: _download.FileSpec(url=(server / name).as_uri(), sha256=_sha256(server / name))
        for name in ("go-basic.obo", "goa_human.gaf.gz")
    }
    monkeypatch.setitem(_download.GO_RELEASES, RELEASE, files)
    monkeypatch.setenv("SCLENS_CACHE", str(tmp_path / "cache"))
    _clear_caches()
    yield server
    _clear_caches()


def test_download_parse_and_propagate(mirror):
    net = sl.datasets.go_gene_sets(source="download", release=RELEASE, namespaces=("BP",), min_size=2, max_size=3)
    sets = {k: sorted(v) for k, v in net.groupby("source", observed=True)["target"].agg(set).items()}
    assert sets == {
        "GO:0000002": ["BTK", "CD79A", "MS4A1"],
        "GO:0000003": ["BTK", "CD79A", "MS4A1"],
        "GO:0000004": ["CD79A", "MS4A1"],
    }
    assert net.attrs["go_release"] == RELEASE
    assert net.attrs["annotation_date"] == "2099-01-02"
    cached = _download.cache_dir() / RELEASE / "goa_human.gaf.gz"
    assert cached.is_file()
    assert sl.datasets.go_ontology(source="download", release=RELEASE).name("GO:0000004") == "B cell activation"
    aliases = sl.datasets.gene_aliases(source="download", release=RELEASE)
    assert set(aliases.loc[aliases["alias"] == "CD20", "symbol"]) == {"MS4A1"}


def test_corrupt_cached_file_is_not_trusted(mirror):
    path = _download.fetch_go_file(RELEASE, "go-basic.obo")
    path.write_text("truncated")
    again = _download.fetch_go_file(RELEASE, "go-basic.obo")  # re-downloaded because the hash differs
    assert again.read_bytes() == (mirror / "go-basic.obo").read_bytes()


def test_hash_mismatch_raises_and_drops_cache(mirror, monkeypatch):
    path = _download.fetch_go_file(RELEASE, "go-basic.obo")
    assert path.is_file()
    good = _download.GO_RELEASES[RELEASE]["go-basic.obo"]
    monkeypatch.setitem(_download.GO_RELEASES[RELEASE], "go-basic.obo", _download.FileSpec(good.url, "0" * 64))
    with pytest.raises(ValueError, match="does not match its pinned SHA-256 0{64}: the download is corrupt"):
        _download.fetch_go_file(RELEASE, "go-basic.obo")
    assert not path.exists()


def test_unpinned_hash_logs_a_warning(mirror, monkeypatch, caplog):
    spec = _download.GO_RELEASES[RELEASE]["go-basic.obo"]
    monkeypatch.setitem(_download.GO_RELEASES[RELEASE], "go-basic.obo", _download.FileSpec(spec.url, None))
    with caplog.at_level(logging.WARNING, logger="sclens"):
        _download.fetch_go_file(RELEASE, "go-basic.obo")
    assert "has no pinned SHA-256" in caplog.text
    assert spec.sha256 in caplog.text  # the received file's hash is reported so it can be pinned


def test_default_registry_documents_unpinned_hashes():
    files = _download.GO_RELEASES[_download.DEFAULT_RELEASE]
    assert set(files) == {"go-basic.obo", "goa_human.gaf.gz", "mgi.gaf.gz"}
    assert all(f.url.startswith("https://release.geneontology.org/2022-07-01/") for f in files.values())


def test_download_bad_input(mirror):
    with pytest.raises(ValueError, match="GO release '1999-01-01' is not pinned in sclens"):
        sl.datasets.go_gene_sets(source="download", release="1999-01-01")
    with pytest.raises(ValueError, match="has no pinned file 'mgi.gaf.gz'"):
        sl.datasets.go_gene_sets(source="download", release=RELEASE, organism="mouse")
    with pytest.raises(ValueError, match="Unknown organism 'rat'"):
        sl.datasets.go_gene_sets(source="download", organism="rat")

"""``sl.pl.atlas`` never loses or misreports data: bad paths, hostile labels, annotations of another run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import sclens as sl
from sclens._cli import main


def _script(path) -> str:
    return re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', path.read_text(), re.S).group(1)


@pytest.fixture(scope="module")
def written(atlas_toy, tmp_path_factory):
    """The toy written as an h5ad file, and its bytes."""
    path = tmp_path_factory.mktemp("h5ad") / "x.h5ad"
    ad = atlas_toy.copy()
    del ad.uns["toy"]
    ad.write_h5ad(path)
    return path, path.read_bytes()


def test_input_h5ad_as_output_refused(atlas_toy, written, capsys):
    path, before = written
    with pytest.raises(ValueError, match=r"x\.h5ad' exists and is not an HTML page; the atlas writes one HTML page"):
        sl.pl.atlas(atlas_toy, path)
    assert main(["-q", "atlas", str(path), "-o", str(path)]) == 1
    assert "never overwrites another file (nothing was written)" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.h5ad"]  # no temporary file left
    with pytest.raises(ValueError, match=r"names a data file"):
        sl.pl.atlas(atlas_toy, path.with_name("new.h5ad"))


def test_existing_files_and_directories(atlas_toy, tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"path '{re.escape(str(tmp_path))}' is a directory; pass the HTML"):
        sl.pl.atlas(atlas_toy, tmp_path)
    notes = tmp_path / "notes.html"
    notes.write_text("my notes, not a page")
    with pytest.raises(ValueError, match="exists and is not an HTML page"):
        sl.pl.atlas(atlas_toy, notes)
    assert notes.read_text() == "my notes, not a page"
    page = sl.pl.atlas(atlas_toy, tmp_path / "a.html", max_cells=50)
    assert sl.pl.atlas(atlas_toy, page, max_cells=60) == page  # an atlas page is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "notes.html"]


def test_every_less_than_escaped(atlas_toy, tmp_path):
    ad = atlas_toy.copy()
    hostile = "<!--<script>alert(1)</script>"
    ad.obs["cell_type"] = ad.obs["cell_type"].cat.rename_categories({ad.obs["cell_type"].cat.categories[0]: hostile})
    ad.uns["sae"]["features"]["label"] = hostile
    text = _script(sl.pl.atlas(ad, tmp_path / "a.html", groupby="cell_type"))
    assert "<" not in text
    d = json.loads(text)
    assert d["groups"]["names"][0] == hostile
    assert d["features"]["label"][0] == hostile


def _two_runs(atlas_toy):
    ad = atlas_toy.copy()
    ad.uns["sae"]["run_id"] = "aaaa"
    ad.uns["sae_go"]["params"]["sae_run_id"] = "aaaa"
    ad.obsm["X_sae2"] = ad.obsm["X_sae"].copy()
    ad.uns["sae2"] = {"params": {}, "features": ad.uns["sae"]["features"].copy(), "run_id": "bbbb"}
    return ad


def test_annotation_of_another_run_refused(atlas_toy, tmp_path):
    ad = _two_runs(atlas_toy)
    path = tmp_path / "a.html"
    assert sl.pl.atlas(ad, path, max_cells=50) == path  # the annotation's own run
    msg = r"`adata.uns\['sae_go'\]` annotates the SAE run 'sae', not 'sae2' \(run aaaa, not run bbbb\)"
    with pytest.raises(ValueError, match=msg):
        sl.pl.atlas(ad, tmp_path / "b.html", sae_key="sae2")
    ad.uns["sae"]["run_id"] = "cccc"  # refitted: the annotation is stale
    with pytest.raises(ValueError, match=r"computed from SAE run aaaa, but `adata.uns\['sae'\]` now holds run cccc"):
        sl.pl.atlas(ad, tmp_path / "c.html")
    with pytest.raises(ValueError, match="computed from SAE run aaaa"):  # as the other readers refuse it
        sl.get.feature_terms(ad, features=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html"]


def test_basis_must_have_two_finite_columns(atlas_toy, tmp_path):
    ad = atlas_toy.copy()
    ad.obsm["X_line"] = np.asarray(ad.obsm["X_umap"])[:, :1]
    with pytest.raises(ValueError, match=r"`adata.obsm\['X_line'\]` has shape \(600, 1\); the atlas draws two"):
        sl.pl.atlas(ad, tmp_path / "a.html", basis="line")
    ad.obsm["X_umap"] = np.asarray(ad.obsm["X_umap"]).copy()
    ad.obsm["X_umap"][3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite coordinates"):
        sl.pl.atlas(ad, tmp_path / "a.html")
    with pytest.raises(KeyError, match="groupby='nope' is not a column of adata.obs"):
        sl.pl.atlas(atlas_toy, tmp_path / "a.html", groupby="nope")
    assert list(tmp_path.iterdir()) == []

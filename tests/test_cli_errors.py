"""``sclens`` errors (issue 23): one line naming the parameter, no traceback, nothing computed first.

Training and the annotation runner fail the test if a bad call reaches them; ``--debug`` shows the
traceback; a step that fails after the h5ad was written says that the file is complete.
"""

from __future__ import annotations

import anndata
import numpy as np
import pytest

import sclens as sl
from sclens._cli import main

FIT = ["--use-rep", "X_emb", "--n-features", "16", "-k", "2", "--n-epochs", "2"]


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    adata = sl.datasets.toy(n_cells=200, n_genes=200, random_state=0)
    del adata.uns["toy"]
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    adata.write_h5ad(d / "in.h5ad")
    return d / "in.h5ad"


@pytest.fixture
def nothing_computed(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the expensive work started before the input was validated")

    monkeypatch.setattr("sclens.sae.train_sae", fail)
    monkeypatch.setattr("sclens.tl._annotation._annotate.run_contrasts", fail)


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"sclens {command}: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def _config(tmp_path, h5ad, text: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {h5ad}\noutput: {tmp_path / 'out.h5ad'}\n{text}")
    return str(cfg)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "cuda"], "device='cuda' (argument `device` or `sclens.settings.device`) is not available"),
        (["-o", "{tmp}/out.txt"], "output '{tmp}/out.txt' must end with .h5ad."),
        (["-o", "{tmp}"], "output '{tmp}' must end with .h5ad."),
        (["--use-rep", "X_nope"], "`fit.use_rep`: 'X_nope' is not in the input's obsm"),
    ],
)
def test_fit_errors_before_training(h5ad, tmp_path, capsys, nothing_computed, monkeypatch, argv, message):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    args = ["-q", "fit", str(h5ad), "-o", str(tmp_path / "out.h5ad"), *FIT]
    for i in range(0, len(argv), 2):  # later options win in argparse
        args += [argv[i], argv[i + 1].format(tmp=tmp_path)]
    assert main(args) == 1
    assert message.format(tmp=tmp_path) in _one_line(capsys, "fit")
    assert not (tmp_path / "out.h5ad").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fit: {use_rep: X_emb}\nspecificity: {groupby: celltype}\n", "`specificity.groupby`: 'celltype' is not in"),
        ("fit: {use_rep: X_emb}\nannotate: {gene_sets: go-human, layer: raw}\n", "`annotate.layer`: 'raw' is not in the input's layers"),
        ("fit: {use_rep: X_emb}\nannotate: {gene_sets: nope.gmt}\n", "no such GMT file"),
        ("fit: {use_rep: X_emb}\natlas: {path: a.html, basis: tsne}\n", "`atlas.basis`: 'X_tsne' is not in the input's obsm"),
        ("fit: {use_rep: X_emb}\nspecificity: {groupby: n_counts}\n", "is numeric with"),
    ],
)
def test_run_checks_every_step_before_the_first(h5ad, tmp_path, capsys, nothing_computed, text, message):
    """Issue 23: a missing `groupby` failed only after the fit had run."""
    assert main(["-q", "run", _config(tmp_path, h5ad, text)]) == 1
    assert message in _one_line(capsys, "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_run_says_the_output_was_written_when_the_atlas_fails(h5ad, tmp_path, capsys, monkeypatch):
    def broken_atlas(adata, path, *, basis="umap", **kwargs):
        raise ValueError("no annotation to draw")

    monkeypatch.setattr(sl.pl, "atlas", broken_atlas)
    cfg = _config(tmp_path, h5ad, "fit: {use_rep: X_emb, n_features: 16, k: 2, n_epochs: 2}\natlas: {path: a.html}\n")
    assert main(["-q", "run", cfg]) == 1
    line = _one_line(capsys, "run")
    out = tmp_path / "out.h5ad"
    assert f"the atlas step failed (ValueError: no annotation to draw) after {str(out)!r} was written in full" in line
    assert f"run `sclens atlas {out} -o {tmp_path / 'a.html'}`" in line
    assert anndata.read_h5ad(out).obsm["X_sae"].shape == (200, 16)  # complete, with the fit


def test_demo_into_an_existing_file(tmp_path, capsys, nothing_computed):
    target = tmp_path / "demo"
    target.write_text("not a directory")
    assert main(["-q", "demo", "-o", str(target)]) == 1
    assert "is a file; `sclens demo` writes a directory" in _one_line(capsys, "demo")
    assert target.read_text() == "not a directory"


def test_unexpected_error_one_line_and_debug_traceback(h5ad, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("something sclens did not foresee")

    monkeypatch.setattr(sl.tl, "fit_sae", bug)
    args = ["fit", str(h5ad), "-o", str(tmp_path / "o.h5ad"), *FIT]
    assert main(["-q", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sclens fit: internal error: RuntimeError: something sclens did not foresee. This is a bug in "
        "sclens or a library it calls; run again with --debug for the traceback and report it."
    ]
    with pytest.raises(RuntimeError, match="did not foresee"):
        main(["-q", "--debug", *args])


def test_ctrl_c_exit_status_and_outputs(h5ad, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "o.h5ad"
    out.write_bytes(b"the old output")
    monkeypatch.setattr(sl.tl, "fit_sae", interrupted)
    assert main(["-q", "fit", str(h5ad), "-o", str(out), *FIT]) == 130
    assert capsys.readouterr().err.strip() == "sclens fit: interrupted; output files are as they were."
    assert out.read_bytes() == b"the old output"

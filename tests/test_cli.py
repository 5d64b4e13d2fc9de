"""The ``sclens`` command: every subcommand in-process through ``main(argv)``, one real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

import sclens as sl
from sclens._cli import build_parser, main

SUBCOMMANDS = ["fit", "specificity", "annotate", "atlas", "run", "demo"]
FIT = ["--use-rep", "X_emb", "--n-features", "32", "-k", "4", "--n-epochs", "20", "--lr", "0.01"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Toy data written to h5ad and its planted programs to GMT; then fit -> specificity -> annotate by CLI."""
    d = tmp_path_factory.mktemp("cli")
    adata = sl.datasets.toy(n_cells=600, n_genes=200, random_state=0)
    gmt = d / "programs.gmt"
    sl.datasets.write_gmt(adata.uns["toy"]["gene_sets"], gmt)
    del adata.uns["toy"]
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    adata.write_h5ad(d / "in.h5ad")
    assert main(["-q", "fit", str(d / "in.h5ad"), "-o", str(d / "fit.h5ad"), *FIT]) == 0
    assert main(["-q", "specificity", str(d / "fit.h5ad"), "--groupby", "cell_type", "-o", str(d / "spec.h5ad")]) == 0
    args = ["--gene-sets", str(gmt), "--layer", "counts", "--high-quantile", "0.9", "--n-low", "200"]
    assert main(["-q", "annotate", str(d / "spec.h5ad"), "-o", str(d / "annot.h5ad"), *args]) == 0
    return d


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: sclens {command}" in capsys.readouterr().out


def test_steps_match_the_api(files):
    """fit / specificity / annotate by command give what the same calls of the API give."""
    adata = anndata.read_h5ad(files / "in.h5ad")
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=4, n_epochs=20, lr=0.01, random_state=0)
    sl.tl.feature_specificity(adata, groupby="cell_type")
    gs = sl.datasets.read_gmt(files / "programs.gmt")
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", high_quantile=0.9, n_low=200)
    out = anndata.read_h5ad(files / "annot.h5ad")
    np.testing.assert_allclose(out.obsm["X_sae"].toarray(), adata.obsm["X_sae"].toarray(), rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(out.uns["sae"]["features"], adata.uns["sae"]["features"], check_dtype=False)
    res = out.uns["sae_go"]["results"]
    pd.testing.assert_frame_equal(res, adata.uns["sae_go"]["results"], check_dtype=False)
    planted = res["term"].str.startswith("program_")
    assert planted.mean() > 0.9
    assert res.loc[planted, "term"].nunique() >= 8


def test_atlas_command_and_entry_point(files):
    """The real entry point (``python -m sclens``) in a subprocess, with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(Path(sl.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    html = files / "atlas.html"
    cmd = [sys.executable, "-m", "sclens", "atlas", str(files / "annot.h5ad"), "-o", str(html), "--max-cells", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(html)
    text = html.read_text()
    assert 'id="atlas-data"' in text
    assert '"n":300' in text


def test_one_line_error(files, tmp_path, capsys):
    assert main(["atlas", str(files / "nope.h5ad"), "-o", str(tmp_path / "a.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sclens atlas: error: input file {str(files / 'nope.h5ad')!r} not found."]


def _config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_run_config(files, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.h5ad").write_bytes((files / "in.h5ad").read_bytes())
    (tmp_path / "programs.gmt").write_bytes((files / "programs.gmt").read_bytes())
    cfg = _config(
        tmp_path / "config.yaml",
        """
input: data/in.h5ad
output: results.h5ad
seed: 0
fit: {use_rep: X_emb, n_features: 32, k: 4, n_epochs: 20, lr: 0.01}
specificity: {groupby: cell_type}
annotate: {gene_sets: programs.gmt, layer: counts, high_quantile: 0.9, n_low: 200}
atlas: {path: atlas.html, basis: umap}
""",
    )
    assert main(["-q", "run", str(cfg)]) == 0
    out = anndata.read_h5ad(tmp_path / "results.h5ad")
    ref = anndata.read_h5ad(files / "annot.h5ad")
    pd.testing.assert_frame_equal(out.uns["sae_go"]["results"], ref.uns["sae_go"]["results"], check_dtype=False)
    assert (tmp_path / "atlas.html").stat().st_size > 10_000  # feature_space runs in test_demo (numba compile)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: a.h5ad\nfitt: {}\n", "unknown key(s) ['fitt'] in the config; allowed: ['annotate', 'atlas',"),
        ("input: a.h5ad\nfit: {k: 4}\n", "`fit` needs `use_rep`."),
        ("input: a.h5ad\nfit: {use_rep: X, k: four}\n", "`fit.k` must be int, got 'four'."),
        ("input: a.h5ad\nannotate: {gene_sets: go-human, lyer: counts}\n", "unknown key(s) ['lyer'] in `annotate`"),
        ("input: a.h5ad\nannotate: {gene_sets: go-human, de_method: edger}\n",
         "`annotate.de_method` must be one of ['fast', 'deseq2'], got 'edger'."),
        ("input: a.h5ad\nfit: {use_rep: X, architecture: topkk}\n", "`fit.architecture` must be one of ['topk', 'batchtopk',"),
        ("fit: {use_rep: X}\n", "the config needs `input: <file>.h5ad`."),
        ("- input\n", "the config must be a mapping of sections"),
        ("input: [unclosed\n", "is not valid YAML"),
        ("input: missing.h5ad\n", "input file"),
    ],
)
def test_run_config_errors(tmp_path, capsys, text, message):
    cfg = _config(tmp_path / "c.yaml", text)
    assert main(["-q", "run", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("sclens run: error: ")
    assert message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("specificity: {groupby: celltype}", "`specificity.groupby`: 'celltype' is not in the input's obs columns"),
        ("annotate: {gene_sets: go-human, layer: raw}", "`annotate.layer`: 'raw' is not in the input's layers"),
        ("annotate: {gene_sets: nope.gmt}", "nope.gmt' is not 'go-human' / 'go-mouse' and no such GMT file"),
        ("atlas: {path: a.html, basis: tsne}", "`atlas.basis`: 'X_tsne' is not in the input's obsm"),
        ("atlas: {path: a.html, groupby: celltype}", "`atlas.groupby`: 'celltype' is not in the input's obs columns"),
    ],
)
def test_run_checks_inputs_before_training(files, tmp_path, capsys, monkeypatch, section, message):
    """A wrong name in any step fails before the SAE is trained, and nothing is written."""

    def no_training(*args, **kwargs):
        raise AssertionError("fit_sae ran before the inputs were checked")

    monkeypatch.setattr(sl.tl, "fit_sae", no_training)
    (tmp_path / "in.h5ad").write_bytes((files / "in.h5ad").read_bytes())
    cfg = _config(tmp_path / "c.yaml", f"input: in.h5ad\nfit: {{use_rep: X_emb}}\n{section}\n")
    assert main(["-q", "run", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Nothing was computed" in err or "GMT" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "in.h5ad"]


def test_bad_input_and_no_half_written_output(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.h5ad"
    assert main(["-q", "specificity", str(files / "fit.h5ad"), "--groupby", "cell_typ", "-o", str(out)]) == 1
    assert "cell_typ" in capsys.readouterr().err
    assert main(["-q", "fit", str(files / "in.h5ad"), "-o", str(tmp_path / "x" / "o.h5ad"), *FIT]) == 1
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main(["-q", "atlas", str(files / "gmt_is_not_h5ad.h5ad"), "-o", str(tmp_path / "a.html")]) == 1

    def broken_write(self, path, **kw):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", broken_write)
    assert main(["-q", "specificity", str(files / "fit.h5ad"), "--groupby", "cell_type", "-o", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "sclens specificity: error: disk full"
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temporary file
    with pytest.raises(SystemExit) as exc:  # argparse: missing required option
        main(["fit", str(files / "in.h5ad"), "-o", str(out)])
    assert exc.value.code == 2


def test_demo(tmp_path):
    """The README's one command: PBMC quick start to demo/atlas.html (about 30 s on 2 idle cores)."""
    assert main(["-q", "demo", "-o", str(tmp_path / "demo")]) == 0
    adata = anndata.read_h5ad(tmp_path / "demo" / "pbmc_sclens.h5ad")
    feats = adata.uns["sae"]["features"]
    top = adata.uns["sae_go"]["top_genes"]
    b_features = set(top.loc[top["gene"] == "CD79A", "feature"].astype(str))
    assert (feats.loc[sorted(b_features), "top_group"] == "CD19+ B").mean() > 0.8
    assert (feats["n_terms"] > 0).sum() >= 20  # defaults (10 high cells of 700, padj < 0.05): 27 measured
    assert "feature_space" in adata.uns["sae_go"]
    assert (tmp_path / "demo" / "atlas.html").stat().st_size > 100_000


def test_parser_lists_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)


def test_docs_list_every_config_key():
    from sclens._cli._pipeline import SCHEMA

    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for section, keys in SCHEMA.items():
        line = re.search(rf"^- `{section}`: (.*?)(?:;|\.)$", text, flags=re.M | re.S)
        assert line is not None, section
        assert set(re.findall(r"`(\w+)`", line.group(1))) == set(keys), section


def test_every_config_key_is_one_option_and_every_option_a_key():
    """The step commands' options are generated from the config schema: one ``--key-name`` per key, no other."""
    import inspect

    from sclens._cli._commands import STEPS, TOP_OPTIONS
    from sclens._cli._pipeline import SCHEMA, TOP_LEVEL, choices, function, option_help

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(STEPS) == set(SCHEMA) - {"feature_space"}  # every section with a command of its own
    for name in STEPS:
        actions = [a for a in sub.choices[name]._actions if a.dest != "help"]
        dests = [a.dest for a in actions]
        assert len(dests) == len(set(dests)), name
        assert set(dests) - TOP_OPTIONS == set(SCHEMA[name]) - ({"path"} if name == "atlas" else set()), name
        assert TOP_OPTIONS <= set(TOP_LEVEL)  # the others are the config's top-level keys (atlas: path is -o)
        text = "".join(sub.choices[name].format_help().split())  # argparse wraps lines (and at hyphens)
        params = inspect.signature(function(name)).parameters
        for a in actions:
            if a.dest in TOP_OPTIONS:
                continue
            spec = SCHEMA[name][a.dest]
            assert f"--{a.dest.replace('_', '-')}" in a.option_strings
            assert (a.default, a.required) == (None, spec.required)  # None: the function's own default applies
            shown = option_help(name, a.dest)
            assert "".join(shown.split()) in text
            default = params[a.dest].default if a.dest in params else None
            if spec.help is None and default not in (None, inspect.Parameter.empty):
                assert shown.endswith(f"(default: {default})") or f"(default: {default};" in shown
            allowed = choices([(name, a.dest)]).get((name, a.dest))
            assert allowed is None or shown.endswith(f"one of {', '.join(allowed)})")
    args = build_parser().parse_args(["annotate", "in.h5ad", "-o", "o.h5ad", "--gene-sets", "go-human",
                                      "--namespaces", "BP,MF", "--min-size", "3", "--alpha", "0.1"])  # fmt: skip
    assert (args.namespaces, args.min_size, args.alpha, args.flavor) == (["BP", "MF"], 3, 0.1, None)
    assert build_parser().parse_args(["fit", "i", "-o", "o", "--use-rep", "X", "-k", "4"]).k == 4
    from sclens._cli._pipeline import check_choices

    check_choices("annotate", {"enrichment": "wsum"})  # an open choice: any decoupler method is passed on


def test_boolean_and_none_options_parse():
    """``--independent-filter false`` is False (argparse's ``bool("false")`` would be True); ``none`` is None."""
    import argparse

    from sclens._cli._commands import _type
    from sclens._cli._pipeline import SCHEMA

    flag, cap = _type(SCHEMA["annotate"]["independent_filter"]), _type(SCHEMA["annotate"]["max_de_genes"])
    assert [flag(t) for t in ("false", "True", "0", "yes")] == [False, True, False, True]
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false, got 'maybe'"):
        flag("maybe")
    assert cap("none") is None and cap("150") == 150

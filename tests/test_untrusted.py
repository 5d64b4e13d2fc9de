"""Files from someone else (issue 23): nothing in them runs as code; hostile ones fail fast, in bounded memory.

The guarantees are listed in docs/errors.md ("Files from someone else").
"""

from __future__ import annotations

import json
import pickle
import tracemalloc

import anndata
import numpy as np
import pytest

import sclens as sl
from sclens._cli import main


class _Evil:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def fitted():
    adata = sl.datasets.toy(n_cells=200, n_genes=200, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=16, k=2, n_epochs=1)
    return adata


def test_a_pickled_sae_is_never_unpickled(fitted, tmp_path):
    from sclens.sae import load_sae, save_sae

    d = save_sae(sl.get.sae(fitted), tmp_path / "sae")
    marker = tmp_path / "code_ran"
    (d / "sae.safetensors").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError, match="is damaged, truncated or not a safetensors file"):
        load_sae(d)
    with pytest.raises(ValueError, match="is damaged, truncated or not a safetensors file"):
        sl.tl.encode(fitted.copy(), sae=d)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!python/object/apply:builtins.open ['{marker}', 'w']\n", "is not valid YAML"),
        ("input: a.h5ad\nfit: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "is nested too deeply to be a config"),
        ("input: a.h5ad\n" + "# padding\n" * 120_000, "a config is a few lines"),
    ],
    ids=["python-tag", "deeply-nested", "huge"],
)
def test_hostile_yaml_config(tmp_path, capsys, text, message):
    marker = tmp_path / "code_ran"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace("{marker}", str(marker)))
    tracemalloc.start()
    assert main(["-q", "run", str(cfg)]) == 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]
    assert not marker.exists()
    assert peak < 64 * 2**20


def test_hostile_sae_config_json(fitted, tmp_path):
    from sclens.sae import load_sae, save_sae

    d = save_sae(sl.get.sae(fitted), tmp_path / "sae")
    (d / "cfg.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"cfg\.json is damaged: not valid JSON"):
        load_sae(d)
    (d / "cfg.json").write_text(json.dumps({"pad": "x" * (2 << 20)}))
    with pytest.raises(ValueError, match="not an SAE config"):
        load_sae(d)


def test_gmt_line_too_long_fails_without_reading_it_whole(tmp_path, monkeypatch):
    """A 10-million-gene GMT line is refused after ``MAX_LINE`` characters (here made small to keep the test fast)."""
    import sclens._utils as utils

    monkeypatch.setattr(utils, "MAX_LINE", 10_000)
    path = tmp_path / "huge.gmt"
    path.write_text("ok\tdesc\tA\tB\nhuge\tdesc\t" + "\t".join(f"G{i}" for i in range(5_000)) + "\n")
    with pytest.raises(ValueError, match=r"Line 2 of .*huge.gmt' is longer than 10,000 characters"):
        sl.datasets.read_gmt(path)


@pytest.mark.slow
def test_ten_million_gene_gmt_line_in_bounded_memory(tmp_path):
    """The real thing: an 89 MB line; Python's peak allocation stays near ``MAX_LINE`` characters."""
    from sclens._utils import MAX_LINE

    path = tmp_path / "huge.gmt"
    with path.open("w") as fh:
        fh.write("huge\tdesc")
        for start in range(0, 10_000_000, 1_000_000):
            fh.write("".join(f"\tG{i}" for i in range(start, start + 1_000_000)))
        fh.write("\n")
    tracemalloc.start()
    with pytest.raises(ValueError, match="is longer than"):
        sl.datasets.read_gmt(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * MAX_LINE + 16 * 2**20  # str of MAX_LINE characters (up to 4 bytes each), plus the buffer


@pytest.mark.parametrize(
    ("weight", "make", "message"),
    [
        ("W_enc", lambda w: w[:3], r"has shape \(3, 16\) but the config"),
        ("W_enc", lambda w: w.astype(str), r"must be numeric arrays \(W_enc: (object|<U)"),
        ("b_dec", lambda w: np.zeros((2, 2, 2)), r"has shape \(2, 2, 2\)"),
        ("W_dec", lambda w: np.full_like(w, np.nan), "NaN or infinite value"),
    ],
    ids=["shape", "text", "ndim", "nan"],
)
def test_h5ad_with_damaged_weights(fitted, tmp_path, weight, make, message):
    adata = fitted.copy()
    adata.uns["sae"]["weights"][weight] = make(np.asarray(adata.uns["sae"]["weights"][weight]))
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    with pytest.raises(ValueError, match=message):
        sl.get.sae(back)
    with pytest.raises(ValueError, match=message):
        sl.tl.encode(back)

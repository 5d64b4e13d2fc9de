"""Interrupted and concurrent work (issue 23): Ctrl-C, SIGKILL, a full disk and two writers lose nothing.

In-process: a ``KeyboardInterrupt`` raised inside ``fit_sae``, ``annotate_features`` and ``sl.pl.atlas``
(during the long step, and while results are being stored) leaves the AnnData's fingerprint and the
output file's bytes as they were. Out of process: ``sclens`` killed with SIGKILL while writing leaves
the old output; two ``sclens annotate`` writing the same file leave one complete file.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
from fingerprint import file_digest, fingerprint
from scipy import sparse

import sclens as sl
from sclens._cli import main

ANNOTATE = {"layer": "counts", "high_quantile": 0.9, "n_low": 100, "min_size": 3}


@pytest.fixture(scope="module")
def annotated():
    """400 toy cells, the planted programs as SAE features (run id ``r0``), annotated; read-only."""
    adata = sl.datasets.toy(n_cells=400, n_genes=200, random_state=0)
    adata.obsm["X_sae"] = sparse.csr_matrix(adata.obsm["X_codes"], dtype=np.float32)
    table = pd.DataFrame(index=[str(i) for i in range(adata.obsm["X_sae"].shape[1])])
    adata.uns["sae"] = {"params": {"use_rep": "X_emb"}, "features": table, "run_id": "r0"}
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    sl.tl.annotate_features(adata, gene_sets=adata.uns["toy"]["gene_sets"], **ANNOTATE)
    return adata


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _after(real):
    """``real`` run in full, then Ctrl-C: the interrupt lands after the first entries were stored."""

    def run(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    return run


def _after_steps(n: int):
    """A training step that is interrupted at step ``n`` (the earlier ones run)."""
    from sclens.sae._train import _Trainer

    real, calls = _Trainer.train_step, []

    def step(self, x):
        calls.append(1)
        if len(calls) > n:
            raise KeyboardInterrupt
        real(self, x)

    return step


@pytest.mark.filterwarnings("ignore::sclens._provenance.StaleResultWarning")
@pytest.mark.parametrize("where", ["training", "storing"])
def test_interrupted_fit_leaves_adata_as_it_was(annotated, monkeypatch, where):
    import sclens._provenance as provenance
    from sclens.sae._train import _Trainer

    adata = annotated.copy()
    before = fingerprint(adata)
    if where == "training":
        # interrupted at step 4 of 12 (360 training cells, 64 per batch, 2 epochs)
        monkeypatch.setattr(_Trainer, "train_step", _after_steps(3))
    else:  # the old run's annotation already dropped as stale when Ctrl-C arrives
        monkeypatch.setattr(provenance, "drop_stale", _after(provenance.drop_stale))
    with pytest.raises(KeyboardInterrupt):
        sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=4, n_epochs=2, batch_size=64)
    assert fingerprint(adata) == before
    assert "sae_go" in adata.uns
    assert adata.uns["sae"]["run_id"] == "r0"


@pytest.mark.parametrize("where", ["run_contrasts", "add_term_clusters"])
def test_interrupted_annotation_leaves_adata_as_it_was(annotated, monkeypatch, where):
    import sclens.tl._annotation._annotate as module

    adata = annotated.copy()
    before = fingerprint(adata)
    real = getattr(module, where)
    monkeypatch.setattr(module, where, _interrupt if where == "run_contrasts" else _after(real))
    with pytest.raises(KeyboardInterrupt):
        sl.tl.annotate_features(adata, gene_sets=adata.uns["toy"]["gene_sets"], **{**ANNOTATE, "n_low": 80})
    assert fingerprint(adata) == before


def test_interrupted_or_failed_atlas_keeps_the_old_page(annotated, monkeypatch, tmp_path):
    page = tmp_path / "atlas.html"
    page.write_text("<html>the old atlas</html>")
    old = file_digest(page)
    before = fingerprint(annotated)
    monkeypatch.setattr("sclens.pl._atlas.render", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        sl.pl.atlas(annotated, page, max_cells=100)
    monkeypatch.undo()
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):  # half the page reaches the disk, then ENOSPC
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sl.pl.atlas(annotated, page, max_cells=100)
    assert file_digest(page) == old
    assert fingerprint(annotated) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas.html"]  # no temporary file left


def test_cli_full_disk_keeps_input_and_output(annotated, monkeypatch, tmp_path, capsys):
    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    annotated.write_h5ad(src)
    out.write_bytes(b"an older output")
    digests = (file_digest(src), file_digest(out))
    real = anndata.AnnData.write_h5ad

    def full_disk(self, path, **kw):
        real(self, path, **kw)
        Path(path).write_bytes(Path(path).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", full_disk)
    assert main(["-q", "specificity", str(src), "--groupby", "cell_type", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "No space left on device" in err[0]
    assert "the disk is full: no output was written and the input is unchanged" in err[0]
    assert (file_digest(src), file_digest(out)) == digests
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad"]


_KILLED_WRITER = """
import sys, time
from pathlib import Path
import anndata
from sclens._cli import main

real = anndata.AnnData.write_h5ad

def slow(self, path, **kw):  # the new file is on disk, not yet renamed: SIGKILL lands here
    real(self, path, **kw)
    Path(sys.argv[1]).write_text(str(path))
    time.sleep(120)

anndata.AnnData.write_h5ad = slow
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigkill_and_concurrent_writers(annotated, tmp_path):
    """SIGKILL while writing leaves the old output; two ``sclens annotate`` on one output leave one file.

    Slow: three Python processes start side by side (about a minute on 2 loaded cores, mostly imports).
    """
    src, gmt = tmp_path / "in.h5ad", tmp_path / "sets.gmt"
    annotated.write_h5ad(src)
    sl.datasets.write_gmt(annotated.uns["toy"]["gene_sets"], gmt)
    killed, shared, marker = tmp_path / "killed.h5ad", tmp_path / "shared.h5ad", tmp_path / "marker"
    killed.write_bytes(src.read_bytes())
    old = file_digest(killed)
    env = {**os.environ, "PYTHONPATH": str(Path(sl.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    annotate = ["annotate", str(src), "-o", str(shared), "--gene-sets", str(gmt), "--layer", "counts",
                "--high-quantile", "0.9", "--n-low", "100"]  # fmt: skip
    victim = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(marker), "-q", "specificity", str(src), "--groupby", "cell_type",
         "-o", str(killed)], env=env,
    )  # fmt: skip
    writers = [subprocess.Popen([sys.executable, "-m", "sclens", "-q", *annotate], env=env) for _ in range(2)]
    deadline = time.monotonic() + 300
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the writer never reached its write"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    assert file_digest(killed) == old  # the old output, intact
    result = anndata.read_h5ad(shared)  # one complete file
    ref = annotated.copy()
    defaults = {k: v for k, v in ANNOTATE.items() if k != "min_size"}  # as the command gives them
    sl.tl.annotate_features(ref, gene_sets=annotated.uns["toy"]["gene_sets"], **defaults)
    pd.testing.assert_frame_equal(result.uns["sae_go"]["results"], ref.uns["sae_go"]["results"], check_dtype=False)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.h5ad"))
    assert left == [f".killed.h5ad.{victim.pid}.tmp.h5ad"]  # only the killed writer's temporary file remains


@pytest.mark.slow
def test_killed_dask_worker_is_retried_or_a_clear_error(annotated):
    """A dask worker killed (SIGKILL) during a ``LocalCluster`` annotation never leaves partial results.

    Killed once: dask reruns the chunk on another worker and the annotation equals the in-memory one.
    Killed on every attempt: a clear error, and the AnnData is as it was. Slow: worker processes start
    and restart (about a minute on 2 loaded cores).
    """
    import dask

    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")

    class KillWorkers(distributed.diagnostics.plugin.SchedulerPlugin):
        """SIGKILL the worker a chunk's ``block_stats`` task is sent to, the first ``times`` times."""

        def __init__(self, scheduler, times: int) -> None:
            self.scheduler, self.times, self.killed = scheduler, times, []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing" and str(key).startswith("block_stats") and len(self.killed) < self.times:
                self.killed.append(key)
                os.kill(self.scheduler.tasks[key].processing_on.pid, signal.SIGKILL)

    adata = annotated.copy()
    adata.layers["counts"] = da.from_array(adata.layers["counts"].toarray(), chunks=(100, -1))
    gs = adata.uns["toy"]["gene_sets"]
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),  # a chunk fails when its 2nd worker dies
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        once = KillWorkers(cluster.scheduler, times=1)
        cluster.scheduler.add_plugin(once, name="once")
        sl.tl.annotate_features(adata, gene_sets=gs, **ANNOTATE, key_added="dask_go")
        cluster.scheduler.remove_plugin(name="once")
        assert len(once.killed) == 1
        want = annotated.uns["sae_go"]["results"]
        assert len(want) > 10  # planted programs found: the comparison is not empty
        pd.testing.assert_frame_equal(adata.uns["dask_go"]["results"], want, check_exact=False, rtol=1e-9)
        before = fingerprint(adata)
        always = KillWorkers(cluster.scheduler, times=1000)
        cluster.scheduler.add_plugin(always, name="always")
        with pytest.raises(RuntimeError, match=r"A dask worker died on every attempt .* nothing was stored"):
            sl.tl.annotate_features(adata, gene_sets=gs, **ANNOTATE, key_added="dask_go_2")
    assert len(always.killed) >= 2
    assert fingerprint(adata) == before

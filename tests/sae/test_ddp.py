"""Data-parallel training: Lightning Fabric DDP with 2 CPU processes (gloo) through ``sl.tl.fit_sae``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


@pytest.mark.slow  # ~20 s: two fresh interpreters import torch / lightning / sclens
@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP is tested on POSIX")
def test_fit_sae_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for k in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(k, None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = [json.loads((tmp_path / f"written_rank{r}.json").read_text()) for r in (0, 1)]
    assert [w["world_size"] for w in written] == [2, 2]
    assert written[0]["pid"] != written[1]["pid"]  # two processes
    # rank 0 alone evaluates and writes activations / uns
    assert written[0]["obsm"]
    assert written[0]["uns"]
    assert not written[1]["obsm"]
    assert not written[1]["uns"]
    # each rank saw half of the 12 batches per epoch: 4 epochs x 6 steps (one process would take 48)
    assert written[0]["n_steps"] == 24
    # different batches on each rank, yet identical weights: gradients were averaged
    w0, w1 = (np.load(tmp_path / f"weights_rank{r}.npz") for r in (0, 1))
    assert set(w0.files) == set(w1.files) >= {"W_enc", "W_dec", "b_enc", "b_dec"}
    for name in w0.files:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)

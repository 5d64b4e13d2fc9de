"""Run ``sl.tl.fit_sae`` with Lightning Fabric DDP on 2 CPU processes (gloo); used by ``test_ddp.py``.

``python ddp_fit_script.py OUT_DIR``: Fabric re-runs this script for rank 1. Every rank saves its
final SAE weights (``weights_rank{r}.npz``) and what ``fit_sae`` wrote into its AnnData
(``written_rank{r}.json``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from anndata import AnnData

import sclens as sl
import sclens.sae


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 8))
    codes = rng.uniform(0.5, 2.0, (400, 24)) * (rng.random((400, 24)) < 0.15)
    adata = AnnData(np.zeros((400, 1), dtype=np.float32))
    adata.obsm["X_emb"] = (codes @ atoms + 0.01 * rng.normal(size=(400, 8))).astype(np.float32)

    train = sclens.sae.train_sae
    weights: dict[str, np.ndarray] = {}

    def recording_train(model, data, **kw):  # records the trained model of this rank
        history = train(model, data, **kw)
        weights.update({k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()})
        return history

    sclens.sae.train_sae = recording_train
    sl.tl.fit_sae(
        adata, use_rep="X_emb", n_features=32, k=4, n_epochs=4, batch_size=32,
        trainer_kwargs={"strategy": "ddp", "devices": 2}, n_jobs=1,
    )  # fmt: skip
    rank = int(torch.distributed.get_rank())
    np.savez(out / f"weights_rank{rank}.npz", **weights)
    written = {"rank": rank, "world_size": int(torch.distributed.get_world_size()), "pid": os.getpid(),
               "obsm": "X_sae" in adata.obsm, "uns": "sae" in adata.uns}  # fmt: skip
    if written["uns"]:
        written["n_steps"] = int(adata.uns["sae"]["metrics"]["n_steps"])
    (out / f"written_rank{rank}.json").write_text(json.dumps(written))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

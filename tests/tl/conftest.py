"""Fixtures for the annotation tests: toy data with its true codes standing in for SAE activations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl


def sae_from_codes(adata, *, key: str = "sae", extra: bool = False):
    """Store ``obsm['X_codes']`` as the SAE run ``key`` per the storage contract (no SAE needed).

    With ``extra``, three features are appended: a control active on a random 30% of cells
    with a flat activation (its high set is a random 30% of cells, no planted program), a feature active in only 4 cells, and a dead feature.
    """
    codes = np.asarray(adata.obsm["X_codes"], dtype=np.float32)
    if extra:
        rng = np.random.default_rng(1)
        n = adata.n_obs
        control = np.where(rng.random(n) < 0.3, 1.0, 0.0)  # flat: high = a random 30% of cells
        tiny = np.zeros(n)
        tiny[rng.choice(n, 4, replace=False)] = 1.0
        codes = np.column_stack([codes, control, tiny, np.zeros(n)]).astype(np.float32)
    acts = sparse.csr_matrix(codes)
    freq = (codes > 0).mean(axis=0)
    adata.obsm[f"X_{key}"] = acts
    adata.uns[key] = {
        "params": {"architecture": "planted", "n_features": codes.shape[1], "use_rep": "X_emb"},
        "features": pd.DataFrame(
            {
                "frequency": freq,
                "mean_activation": codes.mean(axis=0),
                "max_activation": codes.max(axis=0),
                "kind": np.where(freq > 0, "live", "dead"),
            },
            index=[str(i) for i in range(codes.shape[1])],
        ),
    }
    return adata


def toy_sae(*, extra: bool = False, **kwargs):
    """Toy AnnData with an SAE run under ``"sae"`` whose feature XX is planted program_XX."""
    return sae_from_codes(sl.datasets.toy(**kwargs), extra=extra)


@pytest.fixture(scope="session")
def toy_annot():
    """1,500 cells x 300 genes, 16 planted programs (8 local, 8 global); read-only."""
    return toy_sae(n_cells=1500, n_genes=300, random_state=0, extra=True)


@pytest.fixture
def toy_annot_copy(toy_annot):
    return toy_annot.copy()


SMALL = {"n_cells": 2000, "n_genes": 200, "n_cell_types": 4, "n_local": 2, "n_global": 12}


@pytest.fixture(scope="session")
def engines_pair():
    """Both engines on 20 planted features (+ a control) of a small toy set, DE tables kept.

    As small as issue 4 allows (>= 20 features): 2,000 cells x 200 genes, 100 high vs 200 low cells.
    """
    adata = toy_sae(random_state=3, extra=True, **SMALL)
    gs = adata.uns["toy"]["gene_sets"]
    feats = list(range(21))  # 20 programs + the control feature
    kw = {
        "gene_sets": gs,
        "layer": "counts",
        "features": feats,
        "high_quantile": 0.95,
        "n_low": 200,
        "min_size": 3,
        "return_de": feats,
    }
    sl.tl.annotate_features(adata, **kw, key_added="fast")
    sl.tl.annotate_features(adata, **kw, de_method="deseq2", key_added="deseq2")
    return adata


@pytest.fixture(scope="module")
def scvi_toy():
    """300 toy cells with a tiny SCVI (5 latent dimensions, 3 epochs) set up on the counts layer."""
    scvi = pytest.importorskip("scvi")
    ad = toy_sae(n_cells=300, n_genes=200, n_cell_types=3, n_local=3, n_global=3, random_state=0)
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(ad, layer="counts")
    model = scvi.model.SCVI(ad, n_latent=5, n_hidden=32, n_layers=1)
    model.train(max_epochs=3, batch_size=128, accelerator="cpu", enable_progress_bar=False,
                enable_model_summary=False, logger=False, enable_checkpointing=False)  # fmt: skip
    return ad, model

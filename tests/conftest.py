"""Fixtures shared by all tests. Data builders live in ``biology_fixtures.py`` (``tests/`` is on ``pythonpath``)."""

from __future__ import annotations

import datetime as dt

import matplotlib
import pytest
from biology_fixtures import toy_sae

import sclens as sl

matplotlib.use("Agg")  # plots draw off-screen

try:  # generated-input tests (tests/test_properties.py): bounded in CI, deeper with --hypothesis-profile=long
    from hypothesis import HealthCheck, settings

    _quiet = {"suppress_health_check": list(HealthCheck)}
    settings.register_profile("ci", max_examples=10, derandomize=True, deadline=None, **_quiet)
    # per-test example counts: tests/test_properties.py's EXAMPLES; an example running over 2 minutes fails
    settings.register_profile("long", max_examples=200, deadline=dt.timedelta(minutes=2), print_blob=True, **_quiet)
    if settings.get_current_profile_name() == "default":  # no --hypothesis-profile given
        settings.load_profile("ci")
except ImportError:  # hypothesis is in the `test` extra
    pass


@pytest.fixture(scope="module")
def one_thread():
    """One torch / BLAS thread: on a shared 2-core machine tiny models run several times faster."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(n)


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

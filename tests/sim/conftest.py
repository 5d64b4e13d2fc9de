"""Small simulated data shared by the simulation tests (scaled-down large preset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

import sclens as sl


@pytest.fixture(scope="module")
def small_large():
    """The large preset scaled down: 2,000 cells, 500 genes, 20 programs."""
    return sl.sim.simulate(preset="large", n_cells=2000, n_genes=500, n_programs=20, random_state=0)


@pytest.fixture
def planted(small_large):
    """Copy whose 'SAE' activations are the true X'' (clipped at 0), stored as CSR like fit_sae does."""
    adata = small_large.copy()
    adata.obsm["X_sae"] = sparse.csr_matrix(np.clip(adata.obsm["X_celltype_altered"], 0, None), dtype=np.float32)
    return adata


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models and BLAS calls run many times faster on one thread when the cores are shared."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(n)

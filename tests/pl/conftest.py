"""Fixtures of the atlas tests (annotated toy data, a headless browser)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sclens as sl

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def atlas_toy():
    """600 cells x 200 genes, feature XX = planted program_XX, + a dead feature; specificity and annotation run."""
    adata = sl.datasets.toy(n_cells=600, n_genes=200, random_state=0)
    codes = np.column_stack([adata.obsm["X_codes"], np.zeros(adata.n_obs)]).astype(np.float32)
    adata.obsm["X_sae"] = sparse.csr_matrix(codes)
    freq = (codes > 0).mean(0)
    adata.uns["sae"] = {
        "params": {"use_rep": "X_emb"},
        "features": pd.DataFrame({"frequency": freq}, index=[str(i) for i in range(codes.shape[1])]),
    }
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    sl.tl.feature_specificity(adata, groupby="cell_type")
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", min_size=3, high_quantile=0.9, n_low=200)
    return adata


@pytest.fixture(scope="module")
def chrome():
    """Headless Debian chromium through selenium (no browser download), recording the console.

    Skips when chromium / chromedriver are missing, except under ``CI=1`` (``.ci/run`` installs them).
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        reason = f"{missing} not installed: `apt-get install -y chromium chromium-driver` to run the browser tests"
        if os.environ.get("CI") == "1":
            pytest.fail(f"CI=1 but {reason}")
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()

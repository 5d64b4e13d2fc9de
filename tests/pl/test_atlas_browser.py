"""The atlas in a real browser: headless Debian chromium driven by selenium, page loaded from a file URL.

Skips when chromium / chromedriver are not installed, except under ``CI=1`` (``.ci/run`` installs
them), where their absence fails the test.
"""

from __future__ import annotations

import time

import pytest

import sclens as sl


@pytest.fixture(scope="module")
def page(tmp_path_factory, atlas_toy, chrome):
    path = sl.pl.atlas(atlas_toy, tmp_path_factory.mktemp("atlas") / "atlas.html", basis="umap")
    chrome.get(path.resolve().as_uri())
    return chrome, atlas_toy


def _visible_features(driver) -> list[int]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#features tbody tr')]"
        ".filter(r => !r.hidden).map(r => +r.dataset.feature)"
    )


def test_page_loads_without_console_errors(page):
    driver, adata = page
    assert driver.execute_script("return document.body.dataset.ready") == "1"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    live = (adata.uns["sae"]["features"]["kind"] != "dead").sum()
    assert len(driver.find_elements("css selector", "#features tbody tr")) == live == 16
    assert sorted(_visible_features(driver)) == list(range(16))


def test_gene_search_filters_rows(page):
    driver, adata = page
    top = adata.uns["sae_go"]["top_genes"]
    counts = top["gene"].value_counts()
    gene = counts.index[(counts >= 1) & (counts < 16)][0]
    box = driver.find_element("id", "search")
    box.clear()
    box.send_keys(gene.lower())  # case-insensitive, exact gene match
    expected = sorted(top.loc[top["gene"] == gene, "feature"].astype(int))
    assert 0 < len(expected) < 16
    assert sorted(_visible_features(driver)) == expected
    assert driver.find_element("id", "count").text == f"{len(expected)} of 16 features"
    box.clear()
    box.send_keys("program_03")  # a term name: substring match
    res = adata.uns["sae_go"]["results"]
    assert sorted(_visible_features(driver)) == sorted(
        res.loc[res["name"].str.contains("program_03"), "feature"].unique()
    )
    driver.execute_script(
        "const b = document.getElementById('search'); b.value = ''; b.dispatchEvent(new Event('input'))"
    )
    assert len(_visible_features(driver)) == 16


def test_card_renders_scatter_and_terms(page):
    driver, adata = page
    driver.find_element("css selector", '#features tbody tr[data-feature="4"]').click()
    time.sleep(0.2)
    assert driver.find_element("id", "card").is_displayed()
    assert "Feature 4" in driver.find_element("css selector", "#card h2").text
    painted = driver.execute_script(
        "const c = document.getElementById('scatter');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;"
        "return [n, +c.dataset.active, +c.dataset.points];"
    )
    assert painted[0] > 1000  # pixels drawn
    assert painted[1] == adata.obsm["X_sae"][:, 4].nnz
    assert painted[2] == adata.n_obs
    res = adata.uns["sae_go"]["results"]
    rows = driver.find_elements("css selector", "#card table.terms tbody tr")
    assert len(rows) == min((res["feature"] == 4).sum(), 30) > 0
    assert rows[0].find_elements("tag name", "td")[0].text == res.loc[res["feature"] == 4, "term"].iloc[0]
    genes = driver.find_elements("css selector", "#card table.genes tbody tr")
    assert len(genes) == (adata.uns["sae_go"]["top_genes"]["feature"] == 4).sum()
    link = driver.find_element("css selector", "#card ul.near a")
    target = link.get_attribute("href").rsplit("-", 1)[1]
    link.click()
    time.sleep(0.2)
    assert f"Feature {target}" in driver.find_element("css selector", "#card h2").text
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []

"""The atlas in a real browser: headless Debian chromium driven by selenium, page loaded from a file URL.

Skips when chromium / chromedriver are not installed, except under ``CI=1`` (``.ci/run`` installs
them), where their absence fails the test.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import sclens as sl

HOSTILE = "<!--<script>"


@pytest.fixture(scope="module")
def page(tmp_path_factory, atlas_toy, chrome):
    """The toy's atlas with a hostile group name, a skipped feature, trust columns and decoder weights."""
    adata = atlas_toy.copy()
    first = adata.obs["cell_type"].cat.categories[0]
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.rename_categories({first: HOSTILE})
    sl.tl.feature_alignment(adata, groupby="cell_type")  # the alignment columns shown, then set by hand
    feats = adata.uns["sae"]["features"].copy()
    feats["cell_type_best"], feats["cell_type_auroc"], feats["annotation_fdr"] = "type_1", 0.93, 0.01
    adata.uns["sae"]["features"] = feats
    adata.uns["sae"]["weights"] = {"W_dec": np.random.default_rng(0).normal(size=(17, 4))}
    ann = adata.uns["sae_go"] = dict(adata.uns["sae_go"])
    ann["skipped"] = pd.DataFrame({"feature": [15], "reason": ["too few high cells"]})
    res = ann["results"].query("feature != 15").copy()
    four = res.index[res["feature"] == 4]  # its two kept terms made one theme: the card shows one row, "1 similar"
    res.loc[four, "term_cluster"], res.loc[four[1:], "representative"] = 0, False
    ann["results"] = res
    ann["top_genes"] = ann["top_genes"].query("feature != 15")
    path = sl.pl.atlas(adata, tmp_path_factory.mktemp("atlas") / "atlas.html", basis="umap", groupby="cell_type")
    chrome.get(path.resolve().as_uri())
    return chrome, adata


def _search(driver, text: str) -> None:
    driver.execute_script(
        "const b = document.getElementById('search'); b.value = arguments[0]; b.dispatchEvent(new Event('input'))", text
    )


def _open(driver, feature: int) -> None:
    driver.execute_script("location.hash = arguments[0]", f"feature-{feature}")
    time.sleep(0.2)


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
    _search(driver, "")
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
    themes = sl.get.feature_terms(adata, features=4, themes=True)
    assert themes["n_theme_terms"].tolist() == [2]
    rows = driver.find_elements("css selector", "#card table.terms tbody tr")
    assert len(rows) == len(themes)
    first = [td.text for td in rows[0].find_elements("tag name", "td")]
    assert first[0] == themes.index[0]
    assert first[4] == str(themes["n_theme_terms"].iloc[0] - 1)  # "similar terms"
    heading = driver.find_elements("css selector", "#card h3")
    n_kept = (adata.uns["sae_go"]["results"]["feature"] == 4).sum()
    assert any(h.text.startswith(f"GO terms ({n_kept} kept") and "most specific term" in h.text for h in heading)
    genes = driver.find_elements("css selector", "#card table.genes tbody tr")
    assert len(genes) == (adata.uns["sae_go"]["top_genes"]["feature"] == 4).sum()
    link = driver.find_element("css selector", "#card ul.near.terms a")
    target = link.get_attribute("href").rsplit("-", 1)[1]
    link.click()
    time.sleep(0.2)
    assert f"Feature {target}" in driver.find_element("css selector", "#card h2").text
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_no_external_request(page):
    driver, _ = page
    urls = driver.execute_script(
        "return [...performance.getEntriesByType('resource').map(e => e.name), "
        "...[...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))]"
    )
    assert [u for u in urls if not u.startswith(("#", "data:", "file:"))] == []


def test_hostile_label_renders_rows_and_legend(page):
    driver, adata = page
    _search(driver, "")
    assert len(_visible_features(driver)) == 16  # the label did not swallow the data script
    _open(driver, 4)
    legend = [e.text for e in driver.find_elements("css selector", "#card .group-legend li")]
    assert legend == [str(c) for c in adata.obs["cell_type"].cat.categories]
    assert legend[0] == HOSTILE
    assert driver.find_element("css selector", "#card figure canvas#groups").is_displayed()
    ticks = [e.text for e in driver.find_elements("css selector", "#card .colorbar .ticks span")]
    assert ticks[0] == "0" and float(ticks[-1]) == pytest.approx(adata.obsm["X_sae"][:, 4].max(), rel=5e-3)


def test_card_tables_show_padj_rule_trust_and_neighbours(page):
    driver, adata = page
    _open(driver, 4)
    heads = [e.text for e in driver.find_elements("css selector", "#card table.genes th")]
    assert heads == ["gene", "log2FC", "padj"]
    top = adata.uns["sae_go"]["top_genes"].query("feature == 4").sort_values("padj", kind="stable")
    cells = driver.find_elements("css selector", "#card table.genes tbody tr:first-child td")
    assert cells[0].text == top["gene"].iloc[0]
    assert float(cells[2].text) == pytest.approx(top["padj"].iloc[0], rel=5e-2)
    layout = driver.execute_script(
        "const th = document.querySelector('#card table.genes th');"
        "const rows = [...document.querySelectorAll('#card table.genes tbody tr')].map(r => r.getBoundingClientRect().height);"
        "return [getComputedStyle(th).position, Math.max(...rows), Math.min(...rows)]"
    )
    assert layout[0] == "static"  # the card's headers scroll with their rows, never float over them
    assert layout[1] < 1.5 * layout[2]  # no value wraps onto a line of its own
    heads = [e.text for e in driver.find_elements("css selector", "#card table.terms th")]
    assert heads == ["term", "name", "p", "padj", "similar terms"]
    rule = driver.find_element("css selector", "#card p.rule").text
    assert rule.startswith("Kept when: over-representation of the genes")
    trust = driver.find_element("css selector", "#card table.trust").text
    assert "type_1: AUROC 0.93" in trust and "annotation null FDR" in trust
    link = driver.find_element("css selector", "#card ul.near.decoder a")
    target = link.get_attribute("href").rsplit("-", 1)[1]
    link.click()
    time.sleep(0.2)
    assert driver.find_element("css selector", "#card h2").text.startswith(f"Feature {target}")
    _open(driver, 15)
    assert [e.text for e in driver.find_elements("css selector", "#card p.skipped")] == [
        "Not annotated: too few high cells."
    ] * 2  # in place of the genes and of the terms


def test_no_match_message_and_card_closing(page):
    driver, _ = page
    _open(driver, 4)
    assert driver.find_element("id", "card").is_displayed()
    _search(driver, "zzz-no-such-thing")
    assert _visible_features(driver) == []
    empty = driver.find_element("id", "empty")
    assert empty.is_displayed() and empty.text.startswith("No feature matches \u201czzz-no-such-thing\u201d")
    assert not driver.find_element("id", "card").is_displayed()  # its feature was filtered out
    _search(driver, "")
    assert not driver.find_element("id", "empty").is_displayed()


def test_readable_at_900_px(page):
    driver, _ = page
    driver.set_window_size(900, 900)
    try:
        _open(driver, 4)
        widths = driver.execute_script(
            "const l = document.getElementById('list');"
            "return [l.scrollWidth, l.clientWidth, document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
        heads = [e.text for e in driver.find_elements("css selector", "#features th")]
        assert "term themes" in heads and "n_term_clusters" not in heads
        assert "cell type AUROC" in heads
    finally:
        driver.set_window_size(1400, 900)

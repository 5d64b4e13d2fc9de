"""Draw docs/_static/atlas.png: the atlas of ``sclens demo`` (700 PBMCs) in headless chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (test extra).
Run from the repository root: ``python scripts/make_atlas_screenshot.py [--demo-dir DIR]``
(with ``--demo-dir`` an existing ``sclens demo -o DIR`` output is reused).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from sclens._cli import main as sclens

OUT = Path(__file__).parents[1] / "docs" / "_static" / "atlas.png"


def screenshot(html: Path, out: Path, *, gene: str = "CD79A") -> str:
    """Search ``gene``, open the first matching card, save the window; return what it shows (for the caption)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(html.resolve().as_uri())
        driver.find_element("id", "search").send_keys(gene)
        rows = [r for r in driver.find_elements("css selector", "#features tbody tr") if r.is_displayed()]
        rows[0].click()
        time.sleep(0.5)
        driver.save_screenshot(str(out))
        count = driver.find_element("id", "count").text
        card = driver.find_element("css selector", "#card h2").text
    finally:
        driver.quit()
    return f"search {gene!r}: {count}; card: {card}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo_dir or Path(tmp)
        if not (demo / "atlas.html").exists():
            sclens(["-q", "demo", "-o", str(demo)])
        shown = screenshot(demo / "atlas.html", OUT)
    print(f"{OUT}\n{shown}  <- the caption and alt text in docs/atlas.md must say this")

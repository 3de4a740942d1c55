"""The report in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium): the page renders, every figure loads, the console stays clean, and a
screenshot is taken.

Without the browser the test is skipped with the reason, unless
``OPTFORGE_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails instead.
``./dev.sh test`` installs the browser when it runs as root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from searchrun import tiny_search

from optforge.report import make_report

CHROMIUM = os.environ.get("OPTFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OPTFORGE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,900"]


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return (f"{path} is missing: apt-get install -y chromium chromium-driver "
                    "(./dev.sh test does it when run as root)")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    why = _missing()
    if why is not None:
        if os.environ.get("OPTFORGE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OPTFORGE_REQUIRE_BROWSER=1 but the browser test cannot run: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no downloads
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_report_renders_in_chromium(browser, tmp_path):
    run = tiny_search(tmp_path / "search")
    report = make_report(run, tmp_path / "report")
    browser.get(report.html.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title == f"optforge search report: {run.name}"
    headings = [e.text for e in browser.find_elements("tag name", "h2")]
    for section in ("Fitness over evaluations", "Cache statistics", "Funnel", "Winners",
                    "Lineage", "Hall of fame", "Pareto front", "Held-out tasks"):
        assert section in headings
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, "
        "i.naturalHeight, i.getBoundingClientRect().width])")
    assert len(images) == len(report.figures) == 5
    for alt, complete, width, height, shown in images:
        assert complete and width > 0 and height > 0 and shown > 0, alt
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(height + 100, 12000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000

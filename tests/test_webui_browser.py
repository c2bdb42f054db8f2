"""End to end in a real browser: the page served by `python -m webui` (what `make demo` runs, started
here from a temporary folder) + headless Debian chromium via selenium.

Uploads a consumer photo through the page's file input, waits for the results, checks that the
landmark overlay and k result images were rendered (and actually decoded by the browser), and saves
a screenshot into the test's temporary folder, or to $FASHIONNET_SCREENSHOT when set (`make
screenshot` sets it to docs/screenshot.png, the README's picture). Skipped only on a machine without /usr/bin/chromium when CI is not set; in CI a
missing browser is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.webui_server import START_TIMEOUT as SERVER_START_TIMEOUT
from tests.webui_server import free_port, launcher_command, running_page
from webui.settings import MAX_UPLOAD_MB

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_ENV = "FASHIONNET_SCREENSHOT"
WINDOW = (1400, 1800)
# The first query loads the model and the index into the server; two shared cores can be slow.
RESULTS_TIMEOUT = 180


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = f"browser test needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install them)")
        pytest.skip(message)


@pytest.fixture
def streamlit_url(tiny_index, synth_root, tmp_path):
    """Serve the page on a free port; always stop that server afterwards."""
    _require_browser()
    port = free_port()
    env = {"FASHIONNET_EXAMPLES_DIR": str(synth_root / "consumer2shop"), "FASHIONNET_DEVICE": "cpu"}
    with running_page(launcher_command(port, "--index", str(tiny_index)), port, cwd=tmp_path, log=tmp_path / "streamlit.log", env=env) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_window_size(*WINDOW)
        yield driver
    finally:
        driver.quit()


def _loaded_images(driver, css: str) -> list:
    """<img> elements under ``css`` that the browser has fully decoded."""
    images = driver.find_elements("css selector", f"{css} img")
    return [im for im in images if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", im)]


def test_upload_in_browser_renders_landmarks_and_results(streamlit_url, browser, synth_root, tiny_index, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    from fashionnet.data.readers import read_benchmark
    from indexer.store import EmbeddingIndex

    root = synth_root / "consumer2shop"
    frame = read_benchmark(root, "consumer2shop", verify_images=False)
    photo = root / sorted(frame.loc[(frame["split"] == "test") & (frame["source"] == "consumer"), "image_path"])[0]
    k = min(20, EmbeddingIndex.load(tiny_index, device="cpu").ntotal)  # the page's default k is 20

    browser.get(streamlit_url)
    upload = WebDriverWait(browser, SERVER_START_TIMEOUT).until(
        lambda d: d.find_elements("css selector", "[data-testid='stFileUploader'] input[type='file']"))[0]
    # the browser is told the page's upload limit; visitors get no box to open another index
    assert f"{MAX_UPLOAD_MB}MB per file" in browser.find_element("css selector", "[data-testid='stFileUploader']").text
    assert not browser.find_elements("css selector", ".st-key-index_dir")
    upload.send_keys(str(photo))

    WebDriverWait(browser, RESULTS_TIMEOUT).until(
        lambda d: len(_loaded_images(d, ".st-key-results")) >= k and _loaded_images(d, ".st-key-query"))
    assert len(_loaded_images(browser, ".st-key-query")) == 1
    results = browser.find_elements("css selector", ".st-key-results img")
    assert len(results) == k
    text = browser.find_element("css selector", ".st-key-results").text
    assert [f"#{rank} " in text for rank in range(1, k + 1)] == [True] * k
    assert not browser.find_elements("css selector", "[data-testid='stException']")

    # Let the page finish its run (the "running" status widget goes away) before the picture.
    WebDriverWait(browser, 60).until(lambda d: not d.find_elements("css selector", "[data-testid='stStatusWidget']"))
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "screenshot.png").absolute()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


# ----------------------------------------------------------------------------- the API's docs, offline

@pytest.fixture
def loopback_only_browser(tmp_path):
    """chromium that reaches nothing but this machine: every other host name fails to resolve, so a
    page that needs a CDN renders blank. Its performance log lists every request the page made."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-api'}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_api_docs_render_with_no_network_but_the_server(loopback_only_browser, tiny_index, tmp_path):
    """/docs and /redoc of `indexer serve` load Swagger UI and ReDoc from the server itself: with
    every other host unreachable, /docs still shows a block per operation of /openapi.json."""
    import re
    import shutil

    import requests
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_api import serving

    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    driver = loopback_only_browser
    with serving(index_dir, tmp_path / "api.log") as url:
        spec = requests.get(f"{url}/openapi.json", timeout=30).json()
        operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
        for page in ("/docs", "/redoc"):
            html = requests.get(f"{url}{page}", timeout=30).text
            assets = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
            assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
            assert "http://" not in html and "https://" not in html

        driver.get(f"{url}/docs")
        WebDriverWait(driver, 90).until(lambda d: len(d.find_elements("css selector", ".opblock")) >= len(operations))
        shown = {(block.find_element("css selector", ".opblock-summary-method").text.strip(),
                  block.find_element("css selector", ".opblock-summary-path").get_attribute("data-path"))
                 for block in driver.find_elements("css selector", ".opblock")}
        assert shown == operations
        requested = [u for u in _requested_urls(driver) if u.startswith(("http:", "https:", "ws:", "wss:"))]  # not chrome:// pages
        assert f"{url}/docs-assets/swagger-ui-bundle.js" in requested and f"{url}/openapi.json" in requested
        assert [u for u in requested if not u.startswith(f"{url}/")] == []

        driver.get(f"{url}/redoc")
        WebDriverWait(driver, 90).until(lambda d: "Several photos in one request" in d.find_element("tag name", "body").text)
        requested = [u for u in _requested_urls(driver) if u.startswith(("http:", "https:", "ws:", "wss:"))]
        assert f"{url}/docs-assets/redoc.standalone.js" in requested
        # ReDoc's bundle asks a CDN for its own attribution logo only, and hides it when that fails
        assert [u for u in requested if not u.startswith(f"{url}/")] in ([], ["https://cdn.redoc.ly/redoc/logo-mini.svg"])

"""Writemate Studio end to end: a real server on 127.0.0.1 and Debian's Chromium, headless, driven by
Playwright, on tiny random models. Screenshots go to test-artifacts/studio/ (kept by CI)."""

import sys
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="the Studio's browser test needs playwright (pip install playwright)")
pytest.importorskip("uvicorn")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from studio_screenshots import Server, chromium_path, launch  # noqa: E402

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's Chromium (apt-get install chromium); .ci/run installs it")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "studio"


@pytest.fixture
def base_url(tiny_writer_dir, tiny_recognizer_dir):
    from writemate import loading, server
    from writemate.recognize import Recognizer

    app = server.create_app(lambda: (loading.load(tiny_writer_dir), Recognizer.from_folder(tiny_recognizer_dir)))
    with Server(app) as running:
        yield running.url


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


def draw_line(page) -> None:
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"] + 20, box["y"] + box["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 40):
        page.mouse.move(x0 + 6 * i, y0 + (15 if i % 4 < 2 else -15), steps=2)
    page.mouse.up()


def test_write_download_draw_and_read_in_a_browser(base_url, browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url)
    page.fill("#text", "hello there")
    with page.expect_request("**/api/prepare") as prepared:  # picking a style reads its line for the text ahead
        page.click('#style-picker [data-style="1"]')
    assert prepared.value.post_data_json == {"text": "hello there", "style": 1, "width": 45}
    page.click("#write")
    page.wait_for_selector("#output[data-state=done]", timeout=60_000)
    assert page.locator("#output path").count() > 0
    with page.expect_download() as download:
        page.click("#download-svg")
    svg = Path(download.value.path()).read_text()
    assert svg.startswith("<?xml") and "<path" in svg
    page.screenshot(path=str(ARTIFACTS / "desktop-write.png"), full_page=True)

    page.click("#tab-draw")
    draw_line(page)
    page.click("#read")
    page.wait_for_selector("#reading[data-state=done]", timeout=30_000)
    page.fill("#prime-text", "my line")
    page.fill("#new-text", "more text")
    page.click("#write-in-my-hand")
    page.wait_for_selector("#output[data-state=done]", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "desktop-draw.png"), full_page=True)
    assert errors == []


def test_the_page_fits_a_phone(base_url, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(base_url)
    page.fill("#text", "hi")
    page.click("#write")
    page.wait_for_selector("#output[data-state=done]", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.screenshot(path=str(ARTIFACTS / "phone-write.png"), full_page=True)

"""Screenshots of Writemate Studio for the docs, on the bundled models, in a desktop and a phone window.

    python tools/studio_screenshots.py [--out docs/images] [--text "..."] [--style 3]

Starts the Studio on 127.0.0.1, drives Debian's Chromium headless with
Playwright (as the end-to-end test does), writes the text, waits for the
page, and saves studio-desktop.png (1280x800) and studio-phone.png (390x844).
It prints how long after pressing Write the first stroke showed and the page was done.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

# As root and on a closed network Chromium needs these (the machine's notes): no sandbox, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    """Debian's Chromium, headless, from a sync_playwright() context."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


class Server:
    """The Studio app served by uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError("the Studio server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from writemate.server import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--text", default="Dear Ada,\nthank you for the books. See you on Friday!")
    parser.add_argument("--style", type=int, default=3)
    args = parser.parse_args()
    with Server(create_app()) as server, sync_playwright() as p:
        browser = launch(p)
        for name, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844})):
            page = browser.new_page(viewport=viewport, device_scale_factor=2 if name == "phone" else 1)
            page.goto(server.url)
            page.fill("#text", args.text)
            page.click(f'#style-picker [data-style="{args.style}"]')
            started = time.perf_counter()
            page.click("#write")
            page.wait_for_selector("#output path", timeout=120_000)
            first = time.perf_counter() - started
            page.wait_for_selector("#output[data-state=done]", timeout=120_000)
            print(f"{name}: first stroke on the page {first:.2f} s after Write, page done {time.perf_counter() - started:.2f} s")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / f"studio-{name}.png"), full_page=name == "phone")
        browser.close()


if __name__ == "__main__":
    main()

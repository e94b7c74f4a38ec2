"""Studio latency: from pressing Write to the first stroke on the page, in the page's own clock.

    python benchmarks/studio_first_stroke.py [--styles none,0,3,5,7] [--text "..."] [--repeats 1] [--pause 0] [--type-last]

Starts the Studio on the bundled models on 127.0.0.1, opens the page in
Debian's Chromium, headless (as tools/studio_screenshots.py does), and for
each style writes one line. The page records the click event's own timestamp
and, through a MutationObserver, when the first ``<path>`` of the live
drawing appears; both are in the page's clock, so Playwright's own latency is
left out. Prints JSON: milliseconds from the click to the first stroke and to
the finished page, per style.

The text is typed and the style picked just before Write is pressed, or
``--pause`` seconds before (a person moving to the button). Picking a style
has the page ask the server to read the style's line for that text
(``POST /api/prepare``), which is most of a styled write's wait. With
``--type-last`` the style is picked first and the text typed just before
Write, so the page has no time to ask for anything ahead: the slowest case.
Each write has a text of its own (a number is added), so that none starts
from an earlier write's reading. The waits for the page poll twice a second
rather than at every frame, so that Playwright's polling does not take CPU
from the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from studio_screenshots import Server, launch  # noqa: E402

from common import machine  # noqa: E402

# Runs in the page before its own script: the click on Write, the first live path, the finished page.
RECORDER = """
window.__marks = {};
document.addEventListener("click", (e) => {
  if (e.target.closest && e.target.closest("#write")) window.__marks = {click: e.timeStamp};
}, true);
new MutationObserver(() => {
  const marks = window.__marks;
  if (marks.click && !marks.stroke && document.querySelector("#output[data-state=writing] path")) marks.stroke = performance.now();
  if (marks.click && !marks.done && document.querySelector("#output[data-state=done]")) marks.done = performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    from writemate.server import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="none,0,3,5,7", help="style ids, none for the default hand")
    parser.add_argument("--text", default="The quick brown fox jumps over")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds from picking the style to pressing Write")
    parser.add_argument("--type-last", action="store_true", help="pick the style, then type the text and press Write at once")
    args = parser.parse_args()
    results = []
    with Server(create_app()) as server, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(RECORDER)
        page.goto(server.url)
        for repeat in range(args.repeats):
            for number, style in enumerate(args.styles.split(",")):
                text = f"{args.text} {repeat * 100 + number}"
                if args.type_last:
                    page.click(f'#style-picker [data-style="{style}"]')
                    page.wait_for_timeout(1000)  # the text before it has rested: no preparation can help
                    page.fill("#text", text)
                else:
                    page.fill("#text", text)
                    page.click(f'#style-picker [data-style="{style}"]')
                page.wait_for_timeout(args.pause * 1000)
                page.click("#write")
                page.wait_for_function("window.__marks.done", polling=500, timeout=120_000)
                marks = page.evaluate("window.__marks")
                results.append({"style": style, "first_stroke_ms": round(marks["stroke"] - marks["click"]),
                                "done_ms": round(marks["done"] - marks["click"])})
        browser.close()
    print(json.dumps({"machine": machine(2), "text": args.text, "pause": args.pause, "type_last": args.type_last, "writes": results}, indent=2))


if __name__ == "__main__":
    main()

"""The customer's first screen in headless Chromium: first contentful paint, and its weight.

``kiosk serve`` runs with the simulators and the demo planogram; Debian's Chromium, driven by
Playwright as the browser tests drive it, opens the touchscreen page in a fresh browser
context each time (an empty cache, as after the kiosk browser restarts) at the smallest
screen the kiosk is built for, and waits for the first screen ("Touch to start"). The first
contentful paint comes from the page's own Paint Timing entry; the weight is the bytes
transferred for the page and everything it fetched by then, from Resource Timing (the event
stream stays open, so only what it sent is not counted).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.figures import Figure
from bench.served import seeded_database, serve

CHROMIUM = Path("/usr/bin/chromium")
#: The same switches as the browser tests (tests/browser/conftest.py).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
LOADS = 9
#: Marks the moment the first screen shows, in the page's own clock.
WATCH_FIRST_SCREEN = """
new MutationObserver((changes, observer) => {
  if (document.body && document.body.dataset.screen === "attract") {
    window.__firstScreen = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-screen"]});
"""
MEASURE = """() => {
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {fcp: paint ? paint.startTime : null, screen: window.__firstScreen,
          bytes: entries.reduce((sum, e) => sum + e.transferSize, 0), requests: entries.length};
}"""


def run() -> list[Figure]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    loads: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-screen-") as scratch, \
            serve(seeded_database(Path(scratch) / "kiosk.db", plenty=False)) as kiosk, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            for _ in range(LOADS + 1):
                context = browser.new_context(viewport={"width": 800, "height": 480})
                try:
                    page = context.new_page()
                    page.add_init_script(WATCH_FIRST_SCREEN)
                    page.goto(kiosk.url + "/", wait_until="load")
                    page.wait_for_function("() => window.__firstScreen !== undefined",
                                           timeout=10_000)
                    loads.append(page.evaluate(MEASURE))
                finally:
                    context.close()
        finally:
            browser.close()
    loads = loads[1:]  # the first load pays for starting the browser's own processes
    fcp = statistics.median(load["fcp"] for load in loads)
    screen = statistics.median(load["screen"] for load in loads)
    weight = statistics.median(load["bytes"] for load in loads) / 1000
    requests = int(statistics.median(load["requests"] for load in loads))
    return [
        Figure(
            name="customer first screen: first contentful paint (headless Chromium)",
            ours=f"{fcp:.0f} ms", reference="-", ratio=fcp / 300,
            target="first contentful paint <= 300 ms", met=fcp <= 300,
            note=(f"median of {LOADS} loads, each in a fresh browser context (empty cache) at "
                  f"800x480; the first screen (\"Touch to start\", after the catalog and the "
                  f"event stream answered) showed at {screen:.0f} ms. Ratio = ours / target."),
        ),
        Figure(
            name="customer first screen: weight",
            ours=f"{weight:.1f} KB in {requests} requests", reference="-",
            ratio=weight / 150, target="weight <= 150 KB", met=weight <= 150,
            note=("bytes transferred (headers included) for the page, its styles, scripts and "
                  "the catalog, by the time the first screen showed. Ratio = ours / target."),
        ),
    ]

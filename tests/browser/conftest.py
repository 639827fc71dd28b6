"""The touchscreen in Debian's Chromium, headless, against the real app on a loopback port.

Each test gets its own kiosk (a fresh database, device doubles) and its own browser page; the
browser itself is started once. Screenshots of the key screens go to
``test-output/screenshots/<test name>/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from kiosk.config import Settings
from kiosk.machine import Machine
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
#: The smallest screen the kiosk is built for; tests run there unless they say otherwise.
SMALL: ViewportSize = {"width": 800, "height": 480}
SIZES: list[ViewportSize] = [SMALL, {"width": 1024, "height": 600}, {"width": 1280, "height": 800}]


# Package scope, not session: Playwright's sync API keeps its event loop running in this
# thread, which must be over before the asynchronous tests elsewhere in the suite start.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install the Debian package chromium (make browser)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Kiosk:
    """The app served by uvicorn in its own thread, and what a test may do to it from outside."""

    def __init__(self, running: RunningKiosk, doubles: Doubles) -> None:
        self.running = running
        self.doubles = doubles
        self.url = running.url
        self.http = httpx.Client(base_url=running.url, timeout=10)

    @property
    def machine(self) -> Machine:
        """For reads only: the machine lives on the server's event loop."""
        machine: Machine = self.running.app.state.machine
        return machine

    def on_server(self, call: Callable[[], object]) -> None:
        """Run ``call`` on the server's event loop (device doubles are not thread-safe)."""
        loop = self.running.server.servers[0].get_loop()

        async def run() -> None:
            call()

        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=5)

    def sale(self, sale_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get(f"/api/sales/{sale_id}").json()
        return answer


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles) -> Iterator[Kiosk]:
    with RunningKiosk(settings, doubles) as running:
        kiosk = Kiosk(running, doubles)
        try:
            yield kiosk
        finally:
            kiosk.http.close()


class Touchscreen:
    """A browser page on the kiosk, used the way a customer uses the screen: by touching it."""

    def __init__(self, page: Page, kiosk: Kiosk, shots: Path) -> None:
        self.page = page
        self.kiosk = kiosk
        self.shots = shots
        self.count = 0
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.kiosk.url}/{query}")
        self.expect_screen("attract")

    def expect_screen(self, screen: str, timeout: float = 5000) -> None:
        expect(self.page.locator("body")).to_have_attribute("data-screen", screen,
                                                            timeout=timeout)

    def button(self, name: str | re.Pattern[str]) -> Locator:
        return self.page.get_by_role("button", name=name, exact=isinstance(name, str))

    def settle(self) -> None:
        """Wait while a screen that just appeared still ignores touches (see view.js)."""
        self.page.wait_for_function("() => !document.querySelector('.arriving')",
                                    polling="raf")

    def touch(self, name: str | re.Pattern[str]) -> None:
        self.settle()
        self.button(name).tap()

    def start(self) -> None:
        self.touch(re.compile("Touch to start"))
        self.expect_screen("grid")

    def choose(self, slot: str) -> None:
        self.settle()
        self.page.locator(f".tile[data-slot='{slot}']").tap()
        self.expect_screen("detail")

    def pay(self, method: str) -> str:
        """Touch a payment button; returns the new sale's id from the API's answer."""
        with self.page.expect_response(
            lambda response: response.url.endswith("/api/sales")
            and response.request.method == "POST"
        ) as answer:
            self.touch(method)
        assert answer.value.status == 201, answer.value.text()
        sale_id: str = answer.value.json()["id"]
        return sale_id

    def shot(self, name: str) -> Path:
        self.count += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=path)
        return path

    def says(self, text: str | re.Pattern[str]) -> None:
        """Wait until the visible screen shows ``text`` (hidden screens do not count)."""
        expect(self.page.get_by_text(text).filter(visible=True)).to_be_visible()



OpenScreen = Callable[..., Touchscreen]


@pytest.fixture
def open_screen(
    browser: Browser, kiosk: Kiosk, request: pytest.FixtureRequest
) -> Iterator[OpenScreen]:
    """Open a touchscreen page of the given size; uncaught script errors fail the test."""
    contexts = []
    screens: list[Touchscreen] = []
    name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(SCREENSHOTS / name, ignore_errors=True)  # no stale shots from an older run

    def open_screen(
        size: ViewportSize = SMALL,
        query: str = "",
        prepare: Callable[[Page], object] | None = None,
    ) -> Touchscreen:
        """``prepare`` gets the page before it loads (to route or watch its requests)."""
        context = browser.new_context(viewport=size, has_touch=True, locale="en-GB")
        contexts.append(context)
        context.set_default_timeout(10000)
        screen = Touchscreen(context.new_page(), kiosk, SCREENSHOTS / name)
        screens.append(screen)
        if prepare is not None:
            prepare(screen.page)
        screen.open(query)
        return screen

    yield open_screen
    for context in contexts:
        context.close()
    for screen in screens:
        assert not screen.errors, f"script errors on the page: {screen.errors}"


@pytest.fixture
def screen(open_screen: OpenScreen) -> Touchscreen:
    """The touchscreen at 800x480, on the start screen."""
    return open_screen()

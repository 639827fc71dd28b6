"""The maintenance page in Debian's Chromium against the real app on a loopback port.

A technician works at a laptop (1280x800) or a phone (390x844); every screenshot is taken at
both sizes, into ``test-output/screenshots/<test name>/``. The browser, the ``Kiosk`` wrapper
and the customer's touchscreen come from the touchscreen's browser tests; the technician and
their secret from the maintenance API tests.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from kiosk.config import Settings
from tests.api.conftest import RunningKiosk
from tests.browser.conftest import (  # noqa: F401 (fixtures used by name)
    SCREENSHOTS,
    Kiosk,
    browser,
    open_screen,
)
from tests.conftest import Doubles
from tests.maintenance.conftest import NAME, SECRET, technician  # noqa: F401

LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: Browser messages that mean the page broke the server's Content-Security-Policy.
CSP = re.compile(r"Content Security Policy|Refused to (execute|load|apply)", re.IGNORECASE)


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles, technician: str) -> Iterator[Kiosk]:  # noqa: F811
    """The app with device doubles and one technician, ``tess``."""
    with RunningKiosk(settings, doubles) as running:
        kiosk = Kiosk(running, doubles)
        try:
            yield kiosk
        finally:
            kiosk.http.close()


class MaintenancePage:
    """A technician's browser tab on /maintenance/, used through labels and roles."""

    def __init__(self, page: Page, kiosk: Kiosk, shots: Path, size: ViewportSize) -> None:
        self.page = page
        self.kiosk = kiosk
        self.shots = shots
        self.size = size
        self.count = 0
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: self.errors.append(message.text)
                if CSP.search(message.text) else None)

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.kiosk.url}/maintenance/{hash_}")

    def expect_page(self, name: str, timeout: float = 5000) -> None:
        expect(self.page.locator("body")).to_have_attribute("data-page", name, timeout=timeout)

    def log_in(self, name: str = NAME, secret: str = SECRET) -> None:
        self.expect_page("login")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Secret").fill(secret)
        self.button("Log in").click()

    def button(self, name: str | re.Pattern[str]) -> Locator:
        return self.page.get_by_role("button", name=name, exact=isinstance(name, str))

    def go(self, section: str) -> None:
        """Follow a link of the navigation (scrolled into view on a phone)."""
        self.page.get_by_role("navigation").get_by_role("link", name=section, exact=True).click()

    def section(self, name: str) -> Locator:
        return self.page.locator(f"#page-{name}")

    def says(self, text: str | re.Pattern[str], timeout: float = 5000) -> None:
        expect(self.page.get_by_text(text).filter(visible=True).first).to_be_visible(
            timeout=timeout)

    def notice(self, text: str | re.Pattern[str]) -> None:
        expect(self.page.locator("#notices")).to_contain_text(text)

    def shot(self, name: str) -> None:
        """The page as it is, at the laptop's size and at the phone's (the whole page)."""
        self.count += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        original = self.size
        for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
            self.page.set_viewport_size(size)
            # Charts redraw at their new width on the next frames.
            self.page.evaluate("() => new Promise((done) => requestAnimationFrame(() =>"
                               " requestAnimationFrame(done)))")
            self.page.screenshot(path=self.shots / f"{self.count:02d}-{name}-{label}.png",
                                 full_page=label == "phone")
        self.page.set_viewport_size(original)


OpenMaintenance = Callable[..., MaintenancePage]


@pytest.fixture
def open_maintenance(
    browser: Browser, kiosk: Kiosk, request: pytest.FixtureRequest  # noqa: F811
) -> Iterator[OpenMaintenance]:
    """Open the maintenance page in a fresh browser context; logged in unless told not to."""
    contexts = []
    pages: list[MaintenancePage] = []
    name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(SCREENSHOTS / name, ignore_errors=True)

    def open_maintenance(size: ViewportSize = LAPTOP, logged_in: bool = True,
                         hash_: str = "") -> MaintenancePage:
        context = browser.new_context(viewport=size, locale="en-GB",
                                      has_touch=size["width"] < 600)
        contexts.append(context)
        context.set_default_timeout(10000)
        page = MaintenancePage(context.new_page(), kiosk, SCREENSHOTS / name, size)
        pages.append(page)
        page.open(hash_)
        if logged_in:
            page.log_in()
            page.expect_page(hash_.strip("#/").split("/")[0].split("?")[0] or "dashboard")
        return page

    yield open_maintenance
    for context in contexts:
        context.close()
    for page in pages:
        assert not page.errors, f"script or CSP errors on the maintenance page: {page.errors}"


@pytest.fixture
def tech(open_maintenance: OpenMaintenance) -> MaintenancePage:
    """A technician logged in at a laptop, on the dashboard."""
    return open_maintenance()

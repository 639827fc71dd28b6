"""The touchscreen against the device simulators (real drivers on ptys and mock pins): the
customer's screen, the card provider's settlement report and the spiral's stock agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from kiosk.config import Settings
from tests.api.conftest import RunningKiosk
from tests.browser.conftest import Kiosk, Touchscreen
from tests.conftest import Doubles


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles) -> Iterator[Kiosk]:
    """Every device simulated; the card reader waits for the test to present a card."""
    simulated = Settings(
        database=settings.database, state_dir=settings.state_dir,
        vending="sim://?revolution=0.1&turn_limit=2&drop_limit=1",
        card="sim://?auto=off", fingerprint="sim://",
        payment_timeout=10, dispense_timeout=30, settle_timeout=3,
    )
    with RunningKiosk(simulated) as running:
        kiosk = Kiosk(running, doubles)  # the doubles stay unused: the simulators stand in
        try:
            yield kiosk
        finally:
            kiosk.http.close()


def settlement(kiosk: Kiosk) -> dict[str, Any]:
    report: dict[str, Any] = kiosk.http.get("/api/sim/card/settlement").json()
    return report


def test_card_purchase_is_captured_in_the_settlement_report(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    expect(screen.page.locator("body")).to_contain_text("SIMULATOR")
    screen.start()
    screen.choose("A1")
    screen.pay("Card")
    screen.expect_screen("card")
    screen.shot("present-card")
    kiosk.http.post("/api/sim/card/present", json={"outcome": "approved"}).raise_for_status()
    screen.expect_screen("success", timeout=10000)
    screen.shot("take-your-product")
    report = settlement(kiosk)
    assert report["totals"]["captured_cents"] == 120
    assert [t["status"] for t in report["transactions"]] == ["captured"]


def test_jam_after_approval_says_not_charged_and_the_report_agrees(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    kiosk.http.post("/api/sim/vending/fault", json={"slot": "B1", "fault": "jammed"})
    screen.start()
    screen.choose("B1")
    screen.pay("Card")
    screen.expect_screen("card")
    kiosk.http.post("/api/sim/card/present", json={"outcome": "approved"}).raise_for_status()
    screen.expect_screen("failure", timeout=15000)
    screen.says("You were not charged")
    screen.shot("not-charged")
    totals = settlement(kiosk)["totals"]
    assert totals["captured_cents"] == 0 and totals["reverted_cents"] == 150
    assert totals["open_sessions"] == 0


def test_demo_member_pays_by_fingerprint(screen: Touchscreen, kiosk: Kiosk) -> None:
    screen.start()
    screen.choose("A2")
    screen.pay("Member fingerprint")
    screen.expect_screen("finger")
    screen.shot("place-finger")
    kiosk.http.post("/api/sim/fingerprint/place", json={"finger": "alice"}).raise_for_status()
    screen.expect_screen("success", timeout=10000)
    screen.shot("take-your-product")
    kiosk.http.post("/api/sim/fingerprint/lift")
    assert kiosk.machine.ledger.balance(1) == 2000 - 130

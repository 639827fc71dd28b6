"""Diagnostics (test vend, card reader, live device events) and the downloads: DEX and CSV."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import expect

from drivers.base import HealthState
from tests.browser.conftest import Kiosk
from tests.maintenance_browser.conftest import MaintenancePage


def test_test_vend_card_reader_and_the_live_tail(tech: MaintenancePage, kiosk: Kiosk) -> None:
    tech.go("Diagnostics")
    tech.expect_page("diagnostics")
    expect(tech.page.locator("#event-tail")).to_be_visible()
    expect(tech.page.locator("#fingerprint-diagnostics")).to_contain_text("Templates stored")
    tech.section("diagnostics").get_by_label("Slot", exact=True).select_option("A1")
    tech.button("Test vend").click()
    result = tech.page.locator("#test-vend-result")
    expect(result).to_contain_text("A1: delivered")
    expect(result).to_contain_text("8 → 7")
    assert kiosk.doubles.vending.dispensed == ["A1"]

    vending = kiosk.doubles.vending
    kiosk.on_server(lambda: vending._set_health(HealthState.DEGRADED, "motor runs warm"))
    expect(tech.page.locator("#event-tail")).to_contain_text("vending · degraded · motor runs warm")
    expect(tech.page.locator("#service-pill")).to_have_text("Out of service")  # live, top bar
    tech.button("Re-initialise").click()
    tech.notice("Card reader re-initialised")

    held_up = tech.page.locator("#loop-blocked")
    expect(held_up).to_contain_text("over 250 ms")
    before = times(held_up.inner_text())
    kiosk.on_server(lambda: time.sleep(0.4))  # a commit on a dying SD card
    tech.button("Measure again").click()
    expect(held_up).to_have_text(f"{said(before + 1)} over 250 ms")
    expect(tech.page.locator("#loop-lag-max")).to_have_class("bad")
    tech.shot("diagnostics")


def times(held_up: str) -> int:
    """How often the page says the loop was held up: "never", "once", "3 times"."""
    count = held_up.split(" over ")[0]
    known = {"never": 0, "once": 1}
    return known[count] if count in known else int(count.removesuffix(" times"))


def said(count: int) -> str:
    return {0: "never", 1: "once"}.get(count, f"{count} times")


def test_audit_report_and_sales_export_download(tech: MaintenancePage, tmp_path: Path) -> None:
    tech.go("Audit report")
    tech.expect_page("audit")
    with tech.page.expect_download() as download:
        tech.page.get_by_role("link", name="Download the DEX file").click()
    report = Path(download.value.path()).read_bytes().decode("ascii")
    assert download.value.suggested_filename.endswith(".dex")
    assert report.startswith("DXS*") and "\r\nVA1*" in report and "\r\nPA1*A1*120*" in report
    tech.button("Show it here").click()
    expect(tech.page.locator("#dex-preview")).to_contain_text("machine identification")
    tech.button("Reset the counters").click()
    tech.button("Reset now?").click()  # it asks once more
    expect(tech.page.locator("#dex-reset")).to_contain_text("reset number 1")
    tech.shot("dex")

    tech.go("Sales")
    with tech.page.expect_download() as download:
        tech.page.get_by_role("link", name="Export CSV").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("id,created_at,slot,product,price_cents")

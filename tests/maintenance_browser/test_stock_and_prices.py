"""Stock and prices: restocking, and a new price the open touchscreen shows at once."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Kiosk, OpenScreen
from tests.maintenance_browser.conftest import MaintenancePage


def stock_of(kiosk: Kiosk, code: str) -> int:
    slot = kiosk.machine.ledger.slot(code)
    assert slot is not None
    return slot.stock


def test_restock_one_slot_then_all_of_them(tech: MaintenancePage, kiosk: Kiosk) -> None:
    tech.go("Stock & prices")
    tech.expect_page("stock")
    c3 = tech.page.locator("[data-slot='C3']")
    expect(c3).to_contain_text("1 / 8")
    expect(c3.locator(".badge")).to_have_text("low")
    tech.shot("planogram")

    tech.button("Restock C3").click()
    expect(c3).to_contain_text("8 / 8")
    tech.notice("Slot C3 now holds 8 of 8")
    assert stock_of(kiosk, "C3") == 8
    expect(tech.button("Restock C3")).to_be_disabled()  # full

    a3 = tech.page.locator("[data-slot='A3']")
    expect(a3).to_contain_text("6 / 8")
    tech.button("Restock all to full").click()
    tech.notice("Restocked")
    expect(a3).to_contain_text("8 / 8")
    assert stock_of(kiosk, "A3") == 8 and stock_of(kiosk, "C4") == 5
    tech.shot("all-full")

    tech.go("Dashboard")  # nothing is low any more, and the stock chart says so
    expect(tech.page.locator("#attention")).to_contain_text("Every slot is stocked")
    expect(tech.page.locator("#stock-chart [data-label='C3']")).to_have_attribute("data-value", "8")
    tech.shot("dashboard-stock-chart")


def test_new_price_shows_on_the_open_touchscreen_at_once(
    tech: MaintenancePage, open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    screen = open_screen()  # the customer's screen, 800x480, in a second browser
    screen.start()
    tile = screen.page.locator(".tile[data-slot='A1']")
    expect(tile).to_contain_text("€1.20")

    tech.go("Stock & prices")
    tech.button("Edit A1").click()
    dialog = tech.page.get_by_role("dialog", name="Slot A1")
    expect(dialog).to_be_visible()
    price = dialog.get_by_label("Price (EUR)")
    expect(price).to_have_value("1.20")
    price.fill("1,35")  # a comma works as well as a point
    tech.shot("edit-price")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(tech.page.locator("[data-slot='A1'] .tile-price")).to_have_text("€1.35")

    expect(tile).to_contain_text("€1.35")  # no reload: the catalog event brought it
    screen.shot("touchscreen-new-price")
    tech.shot("planogram-new-price")
    slot = kiosk.machine.ledger.slot("A1")
    assert slot is not None and slot.price_cents == 135
    answer = kiosk.http.get("/api/catalog").json()
    assert next(s for s in answer["slots"] if s["code"] == "A1")["price_cents"] == 135

"""A customer buys at the touchscreen: every way a sale can end, as the customer sees it."""

from __future__ import annotations

from playwright.sync_api import Route, expect

from drivers.base import AuthorizationOutcome, DispenseOutcome
from tests.browser.conftest import Kiosk, OpenScreen, Touchscreen


def failure(screen: Touchscreen, outcome: str) -> None:
    screen.expect_screen("failure")
    expect(screen.page.locator("#screen-failure")).to_have_attribute("data-outcome", outcome)


def test_card_purchase_goes_from_start_to_take_your_product(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    screen.shot("attract")
    screen.start()
    screen.shot("grid")
    screen.choose("C3")  # the last Peanut Butter Cups
    expect(screen.page.locator("#detail-price")).to_have_text("€2.10")
    screen.shot("detail")

    kiosk.doubles.card.gate.close()  # the reader waits until the test "presents the card"
    kiosk.doubles.vending.gate.close()  # and the spiral turns until the test lets it finish
    sale_id = screen.pay("Card")
    screen.expect_screen("card")
    screen.says("Present your card")
    screen.says("Peanut Butter Cups · €2.10")
    expect(screen.button("Cancel")).to_be_visible()
    screen.shot("present-card")

    kiosk.on_server(kiosk.doubles.card.gate.open)
    screen.expect_screen("dispensing")
    screen.says("Dispensing your product")
    screen.shot("dispensing")

    kiosk.on_server(kiosk.doubles.vending.gate.open)
    screen.expect_screen("success")
    screen.says("Take your product")
    expect(screen.page.locator("#screen-success [data-sale-number]")).to_have_text(sale_id[:8])
    screen.shot("take-your-product")
    assert kiosk.doubles.card.captured == ["ref-1"]
    assert kiosk.doubles.vending.dispensed == ["C3"]

    screen.touch("Done")
    screen.expect_screen("attract")
    screen.start()
    sold_out = screen.page.locator(".tile[data-slot='C3']")
    expect(sold_out).to_be_disabled()
    expect(sold_out).to_contain_text("Sold out")
    screen.shot("grid-sold-out")
    sold_out.tap(force=True)  # a touch on a sold-out product does nothing
    screen.expect_screen("grid")


def test_declined_card_says_declined_and_nothing_is_dispensed(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    kiosk.doubles.card.outcome = AuthorizationOutcome.DECLINED
    screen.start()
    screen.choose("A4")
    screen.pay("Card")
    failure(screen, "declined")
    screen.says("Payment declined")
    screen.says("You were not charged")
    screen.shot("declined")
    assert kiosk.doubles.vending.dispensed == []
    assert kiosk.doubles.card.captured == []

    screen.touch("Try again")  # back to the same product, to pay another way
    screen.expect_screen("detail")
    expect(screen.page.locator("#detail-name")).to_have_text("Cola 330 ml")


def test_member_alice_pays_by_fingerprint(screen: Touchscreen, kiosk: Kiosk) -> None:
    alice = kiosk.machine.ledger.member_by_page(1)
    assert alice is not None and alice.id is not None
    before = kiosk.machine.ledger.balance(alice.id)
    kiosk.doubles.fingerprint.page = 1
    kiosk.doubles.fingerprint.gate.close()
    screen.start()
    screen.choose("B1")
    sale_id = screen.pay("Member fingerprint")
    screen.expect_screen("finger")
    screen.says("Place your finger")
    screen.shot("place-finger")

    kiosk.on_server(kiosk.doubles.fingerprint.gate.open)
    screen.expect_screen("success")
    expect(screen.page.locator("#screen-success [data-sale-number]")).to_have_text(sale_id[:8])
    screen.shot("take-your-product")
    assert kiosk.sale(sale_id)["state"] == "completed"
    assert kiosk.machine.ledger.balance(alice.id) == before - 150
    assert kiosk.doubles.card.authorizations == []


def test_unknown_finger_is_not_recognised(screen: Touchscreen, kiosk: Kiosk) -> None:
    kiosk.doubles.fingerprint.page = None
    screen.start()
    screen.choose("B2")
    screen.pay("Member fingerprint")
    failure(screen, "unrecognised")
    screen.says("Fingerprint not recognised")
    screen.shot("not-recognised")
    assert kiosk.doubles.vending.dispensed == []


def test_member_without_enough_balance_is_told_so(screen: Touchscreen, kiosk: Kiosk) -> None:
    kiosk.doubles.fingerprint.page = 2  # Bob has 1.50 left; orange juice costs 2.20
    screen.start()
    screen.choose("A3")
    screen.pay("Member fingerprint")
    failure(screen, "insufficient")
    screen.says("Insufficient balance")
    screen.says("does not cover €2.20")
    screen.shot("insufficient-balance")
    bob = kiosk.machine.ledger.member_by_page(2)
    assert bob is not None and bob.id is not None
    assert kiosk.machine.ledger.balance(bob.id) == 150
    assert kiosk.doubles.vending.dispensed == []


def test_jam_after_card_approval_says_not_charged(screen: Touchscreen, kiosk: Kiosk) -> None:
    kiosk.doubles.vending.outcome = DispenseOutcome.JAMMED
    screen.start()
    screen.choose("B2")
    sale_id = screen.pay("Card")
    failure(screen, "voided")
    screen.says("Not delivered: you were not charged.")
    screen.shot("not-charged")
    # The card reader's own record agrees: the approval was reverted, nothing was charged.
    assert kiosk.doubles.card.voided == ["ref-1"]
    assert kiosk.doubles.card.captured == []
    assert kiosk.sale(sale_id)["state"] == "voided"

    screen.touch("Done")
    screen.start()
    jammed = screen.page.locator(".tile[data-slot='B2']")
    expect(jammed).to_be_disabled()
    expect(jammed).to_contain_text("Not available")
    screen.shot("grid-slot-disabled")


def test_jam_after_fingerprint_payment_credits_the_balance_back(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    kiosk.doubles.vending.outcome = DispenseOutcome.JAMMED
    screen.start()
    screen.choose("C2")
    screen.pay("Member fingerprint")
    failure(screen, "voided")
    screen.says("your balance was credited back")
    screen.shot("credited-back")


def test_cancel_while_waiting_for_the_finger(screen: Touchscreen, kiosk: Kiosk) -> None:
    kiosk.doubles.fingerprint.gate.close()
    screen.start()
    screen.choose("A1")
    sale_id = screen.pay("Member fingerprint")
    screen.expect_screen("finger")
    screen.touch("Cancel")
    failure(screen, "cancelled")
    screen.says("The sale was cancelled. You were not charged.")
    screen.shot("cancelled")
    assert kiosk.sale(sale_id)["state"] == "cancelled"
    assert kiosk.doubles.vending.dispensed == []


def test_a_refused_sale_is_explained_politely(open_screen: OpenScreen) -> None:
    def busy(route: Route) -> None:
        if route.request.method != "POST":
            route.fallback()
            return
        route.fulfill(status=409, json={"error": {
            "code": "busy", "message": "another sale is in progress; wait for it to finish"}})

    screen = open_screen(prepare=lambda page: page.route("**/api/sales", busy))
    screen.start()
    screen.choose("A2")
    screen.touch("Card")
    message = screen.page.locator("#detail-error")
    expect(message).to_have_text(
        "The machine is still finishing another sale. Please try again in a moment.")
    screen.shot("busy")
    screen.expect_screen("detail")
    expect(screen.button("Card")).to_be_enabled()

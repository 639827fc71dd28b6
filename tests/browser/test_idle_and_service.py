"""The screen on its own: a customer who walks away, devices that come and go."""

from __future__ import annotations

import threading
import time

import uvicorn
from playwright.sync_api import expect

from drivers.base import HealthState
from tests.browser.conftest import Kiosk, OpenScreen, Touchscreen

IDLE = 2  # seconds, through ?idle=


def wait_for_state(kiosk: Kiosk, sale_id: str, state: str) -> None:
    deadline = time.monotonic() + 5
    while kiosk.sale(sale_id)["state"] != state:
        assert time.monotonic() < deadline, f"sale {sale_id} is {kiosk.sale(sale_id)}"
        time.sleep(0.05)


def test_inactivity_returns_to_start_and_cancels_the_waiting_sale(
    open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    screen = open_screen(query=f"?idle={IDLE}")
    screen.start()
    began = time.monotonic()
    screen.expect_screen("attract", timeout=(IDLE + 3) * 1000)  # nobody chose anything
    assert time.monotonic() - began >= IDLE - 0.5

    kiosk.doubles.card.gate.close()  # the customer never presents a card
    screen.start()
    screen.choose("A1")
    sale_id = screen.pay("Card")
    screen.expect_screen("card")
    screen.touch("Deutsch")
    screen.says("Bitte Karte vorhalten")
    screen.shot("present-card-de")
    began = time.monotonic()
    screen.expect_screen("attract", timeout=(IDLE + 3) * 1000)
    assert time.monotonic() - began >= IDLE - 0.5
    screen.says("Touch to start")  # the next customer starts in English again
    screen.shot("back-to-start")
    wait_for_state(kiosk, sale_id, "cancelled")
    assert kiosk.doubles.card.cancels >= 1  # the reader's vend request was withdrawn
    assert kiosk.doubles.vending.dispensed == []
    # The cancelled sale's news does not pull the screen back to a result.
    time.sleep(0.5)
    screen.expect_screen("attract")


def test_unplugged_mechanism_takes_the_screen_out_of_service_and_back(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    vending = kiosk.doubles.vending

    def unplug() -> None:
        kiosk.on_server(lambda: vending._set_health(HealthState.OFFLINE, "unplugged"))

    def replug() -> None:
        kiosk.on_server(lambda: vending._set_health(HealthState.OK, "replugged"))

    unplug()  # nobody at the screen
    screen.expect_screen("out-of-service")
    screen.says("Out of service")
    expect(screen.page.get_by_role("button", name="Touch to start")).to_be_hidden()
    screen.shot("out-of-service")
    screen.touch("Deutsch")  # the language still works while out of service
    screen.says("Außer Betrieb")
    screen.touch("English")
    replug()
    screen.expect_screen("attract")
    screen.shot("back-in-service")

    screen.start()  # a customer is looking at the products when the mechanism goes away
    unplug()
    screen.expect_screen("out-of-service")
    replug()
    screen.expect_screen("attract")
    screen.start()
    expect(screen.page.locator(".tile:enabled")).to_have_count(12)


def test_sale_is_followed_by_polling_when_the_event_stream_is_down(
    open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    screen = open_screen(
        prepare=lambda page: page.route("**/api/events", lambda route: route.abort()))
    kiosk.doubles.card.gate.close()
    screen.start()
    screen.choose("A2")
    sale_id = screen.pay("Card")
    screen.expect_screen("card")
    kiosk.on_server(kiosk.doubles.card.gate.open)
    screen.expect_screen("success")
    expect(screen.page.locator("#screen-success [data-sale-number]")).to_have_text(sale_id[:8])
    screen.shot("take-your-product")


def test_unplugged_card_reader_leaves_only_the_fingerprint(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    card = kiosk.doubles.card
    methods = screen.page.locator("#pay-methods button")
    screen.says("Pay by card or with your member fingerprint")
    kiosk.on_server(lambda: card._set_health(HealthState.OFFLINE, "unplugged"))
    screen.says("Pay with your member fingerprint")
    screen.start()
    screen.choose("C1")
    expect(methods).to_have_text(["Member fingerprint"])
    screen.shot("fingerprint-only")

    kiosk.on_server(lambda: card._set_health(HealthState.OK, "replugged"))  # while looking
    expect(methods).to_have_text(["Card", "Member fingerprint"])
    kiosk.on_server(lambda: card._set_health(HealthState.OFFLINE, "unplugged again"))
    expect(methods).to_have_text(["Member fingerprint"])


def test_kiosk_restart_shows_connecting_and_comes_back_by_itself(
    screen: Touchscreen, kiosk: Kiosk
) -> None:
    screen.start()
    first = kiosk.running.server
    first.should_exit = first.force_exit = True  # the process goes away, the page stays
    kiosk.running.thread.join(timeout=10)
    screen.expect_screen("out-of-service", timeout=15000)
    screen.says("Connecting…")
    screen.shot("connecting")

    config = uvicorn.Config(kiosk.running.app, host="127.0.0.1", port=kiosk.running.port,
                            log_config=None, lifespan="on")
    again = uvicorn.Server(config)
    thread = threading.Thread(target=again.run, daemon=True)
    thread.start()
    try:
        screen.expect_screen("attract", timeout=15000)
        screen.shot("back")
    finally:
        again.should_exit = again.force_exit = True
        thread.join(timeout=10)

"""The screen itself: languages, sizes, touch targets, weight, the simulator banner."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Response, Route, ViewportSize, expect

from drivers.base import HealthState
from tests.browser.conftest import SIZES, Kiosk, OpenScreen, Touchscreen

#: Everything on the visible screen that must be on the screen, unclipped, and every button
#: at least 48 px each way; the page must not scroll.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const [width, height] = [innerWidth, innerHeight];
  const page = document.scrollingElement;
  if (page.scrollWidth > width || page.scrollHeight > height) {
    problems.push(`the page scrolls: ${page.scrollWidth}x${page.scrollHeight}`);
  }
  const screen = document.querySelector("main > .screen:not([hidden])");
  const [over, across] = [screen.scrollHeight - screen.clientHeight,
                          screen.scrollWidth - screen.clientWidth];
  if (over > 1 || across > 1) {
    problems.push(`#${screen.id} overflows: ${screen.scrollWidth}x${screen.scrollHeight}`);
  }
  const name = (element) => `${element.tagName.toLowerCase()} "${element.textContent.trim()}"`;
  for (const element of document.querySelectorAll("h1, h2, p, button, .tile, .art, svg")) {
    if (!element.checkVisibility()) continue;
    const box = element.getBoundingClientRect();
    if (box.left < -1 || box.top < -1 || box.right > width + 1 || box.bottom > height + 1) {
      problems.push(`${name(element)} is off the screen: ${JSON.stringify(box)}`);
    }
    if (element.tagName !== "svg" && element.scrollWidth > element.clientWidth + 1) {
      problems.push(`${name(element)} is cut off: ${element.scrollWidth} > ${element.clientWidth}`);
    }
    if (element.tagName === "BUTTON" && (box.width < 48 || box.height < 48)) {
      problems.push(`${name(element)} is only ${box.width}x${box.height} px`);
    }
  }
  return problems;
}"""


def size_id(size: ViewportSize) -> str:
    return f"{size['width']}x{size['height']}"


@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_every_screen_fits_without_scrolling_and_buttons_are_big(
    open_screen: OpenScreen, kiosk: Kiosk, size: ViewportSize
) -> None:
    screen = open_screen(size)
    doubles = kiosk.doubles

    def check(name: str) -> None:
        for language in ("en", "de"):
            problems = screen.page.evaluate(LAYOUT_PROBLEMS)
            assert problems == [], f"{name} in {language} at {size_id(size)}: {problems}"
            screen.shot(f"{name}-{language}")
            screen.page.locator("#language").tap()

    check("attract")
    screen.start()
    expect(screen.page.locator(".tile")).to_have_count(12)
    check("grid")
    screen.choose("A1")
    check("detail")

    doubles.card.gate.close()
    screen.pay("Card")
    screen.expect_screen("card")
    check("card")
    screen.touch("Cancel")
    screen.expect_screen("failure")
    check("cancelled")

    screen.touch("Done")
    screen.start()
    screen.choose("B1")
    doubles.fingerprint.gate.close()
    doubles.vending.gate.close()
    screen.pay("Member fingerprint")
    screen.expect_screen("finger")
    check("finger")
    kiosk.on_server(doubles.fingerprint.gate.open)
    screen.expect_screen("dispensing")
    check("dispensing")
    kiosk.on_server(doubles.vending.gate.open)
    screen.expect_screen("success")
    check("success")

    screen.touch("Done")
    kiosk.on_server(lambda: doubles.vending._set_health(HealthState.OFFLINE, "unplugged"))
    screen.expect_screen("out-of-service")
    check("out-of-service")


def test_language_switch_to_german_changes_the_visible_text(screen: Touchscreen) -> None:
    page = screen.page
    expect(page.locator("#simulator")).to_be_hidden()  # the test doubles are not simulators
    screen.touch("Deutsch")
    screen.says("Zum Starten berühren")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    screen.shot("start-de")

    screen.touch(re.compile("Zum Starten berühren"))
    screen.expect_screen("grid")
    screen.says("Produkt wählen")
    expect(page.locator(".tile[data-slot='A1'] .price")).to_have_text("1,20 €")
    screen.shot("grid-de")

    screen.settle()
    page.locator(".tile[data-slot='C4']").tap()
    screen.expect_screen("detail")
    screen.says("Wie möchten Sie bezahlen?")
    expect(page.locator("#pay-methods button")).to_have_text(
        ["Karte", "Mitglieds-Fingerabdruck"])
    expect(screen.button("Zurück")).to_be_visible()
    expect(page.locator("#detail-price")).to_have_text("8,99 €")
    screen.shot("detail-de")

    screen.touch("English")
    screen.says("How would you like to pay?")
    expect(page.locator("#pay-methods button")).to_have_text(["Card", "Member fingerprint"])
    expect(page.locator("#detail-price")).to_have_text("€8.99")


def test_a_double_tap_on_a_product_does_not_start_a_payment(screen: Touchscreen) -> None:
    posts: list[str] = []

    def watch(request: Request) -> None:
        if request.method == "POST":
            posts.append(request.url)

    screen.page.on("request", watch)
    screen.start()
    screen.settle()
    box = screen.page.locator(".tile[data-slot='B3']").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    screen.page.touchscreen.tap(x, y)
    screen.page.touchscreen.tap(x, y)  # the second tap lands on the new screen at once
    screen.expect_screen("detail")
    screen.settle()
    under_finger = "([x, y]) => document.elementFromPoint(x, y).dataset.method"
    assert screen.page.evaluate(under_finger, [x, y]) == "account"  # a payment button
    screen.page.wait_for_timeout(300)
    assert posts == []
    screen.expect_screen("detail")


def test_first_screen_weighs_under_150_kb_and_needs_nothing_from_elsewhere(
    open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    responses: list[Response] = []
    screen = open_screen(prepare=lambda page: page.on("response", lambda r: responses.append(r)))
    expect(screen.page.locator("#grid .tile")).to_have_count(12)  # the catalog is in

    weights: dict[str, int] = {}
    for response in responses:
        assert response.url.startswith(kiosk.url), f"{response.url} is not the kiosk's own"
        if response.request.resource_type in ("image", "eventsource"):
            continue  # pictures do not count; the event stream never ends
        weights[response.url.removeprefix(kiosk.url)] = len(response.body())
    total = sum(weights.values())
    assert {"/", "/app.js", "/kiosk.css", "/api/catalog"} <= set(weights), weights
    assert total < 150_000, f"the first screen weighs {total} bytes: {weights}"


def test_simulator_banner_shows_on_every_screen_when_simulated(
    open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    def simulated(route: Route) -> None:
        response = route.fetch()
        catalog: dict[str, Any] = response.json()
        catalog["simulated"] = True
        route.fulfill(response=response, json=catalog)

    def prepare(page: Page) -> None:
        page.route("**/api/catalog", simulated)

    screen = open_screen(prepare=prepare)
    banner = screen.page.locator("#simulator")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("SIMULATOR")
    screen.shot("attract")
    screen.start()
    expect(banner).to_be_visible()
    screen.choose("A2")
    expect(banner).to_be_visible()
    kiosk.doubles.card.gate.close()
    screen.pay("Card")
    screen.expect_screen("card")
    expect(banner).to_be_visible()
    assert screen.page.evaluate(LAYOUT_PROBLEMS) == []
    screen.shot("present-card")
    screen.touch("Cancel")
    screen.expect_screen("failure")
    expect(banner).to_be_visible()
    screen.touch("Deutsch")
    expect(banner).to_contain_text("SIMULATOR")
    screen.shot("cancelled-de")


def test_products_show_their_picture_or_a_generated_tile(
    open_screen: OpenScreen, kiosk: Kiosk
) -> None:
    picture = ("data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 4 4'>"
               "<circle cx='2' cy='2' r='2' fill='white'/></svg>")

    def with_pictures(route: Route) -> None:
        response = route.fetch()
        catalog: dict[str, Any] = response.json()
        images = {"A1": picture, "A2": "/pictures/missing.png"}
        for slot in catalog["slots"]:
            slot["product"]["image"] = images.get(slot["code"], "")
        route.fulfill(response=response, json=catalog)

    screen = open_screen(prepare=lambda page: page.route("**/api/catalog", with_pictures))
    screen.start()
    tiles = screen.page.locator(".tile")
    expect(tiles.nth(0).locator("img")).to_be_visible()
    assert tiles.nth(0).locator("img").evaluate("image => image.naturalWidth") > 0
    # A picture that does not load, and a product without one, get their initials instead.
    expect(tiles.nth(1).locator(".initials")).to_have_text("SW")
    expect(tiles.nth(1).locator("img")).to_have_count(0)
    expect(tiles.nth(11).locator(".initials")).to_have_text("UC")
    colours = {tiles.nth(i).locator(".art").evaluate("art => getComputedStyle(art).backgroundColor")
               for i in range(1, 12)}
    assert len(colours) > 6, "the generated tiles should not all look alike"
    screen.shot("pictures")

"""The simulator panel's API over real HTTP, driving the real drivers through the simulators."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from drivers.vending.layout import DEFAULT_LAYOUT_TOML
from kiosk.app import create_app
from kiosk.config import Settings
from tests.api.conftest import RunningKiosk


@pytest.fixture
def panel(sim_settings: Settings) -> Iterator[httpx.Client]:
    with RunningKiosk(sim_settings) as kiosk, httpx.Client(base_url=kiosk.url, timeout=10) as c:
        yield c


def until_state(http: httpx.Client, sale_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sale: dict[str, Any] = http.get(f"/api/sales/{sale_id}").json()
        if sale["state"] in states:
            return sale
        time.sleep(0.02)
    raise AssertionError(f"sale {sale_id} never reached {states}")


def test_panel_page_is_served_with_the_simulator_banner(panel: httpx.Client) -> None:
    page = panel.get("/dev/")
    assert page.status_code == 200 and "SIMULATOR" in page.text
    assert panel.get("/api/catalog").json()["simulated"] is True


def test_present_a_card_from_the_panel_and_read_the_settlement(panel: httpx.Client) -> None:
    sale = panel.post("/api/sales", json={"slot": "A1", "method": "card"}).json()
    until_state(panel, sale["id"], {"authorizing"})
    answer = panel.post("/api/sim/card/present", json={"outcome": "approved"})
    assert answer.json() == {"answered_open_request": True}
    assert until_state(panel, sale["id"], {"completed"})["instruction"] == "take your product"
    report = panel.get("/api/sim/card/settlement").json()
    assert report["totals"]["captured_cents"] == 120
    assert [t["status"] for t in report["transactions"]] == ["captured"]


def test_jam_a_slot_from_the_panel_and_the_card_is_not_charged(panel: httpx.Client) -> None:
    assert panel.post("/api/sim/vending/fault", json={"slot": "b1", "fault": "jammed"}).is_success
    sale = panel.post("/api/sales", json={"slot": "B1", "method": "card"}).json()
    until_state(panel, sale["id"], {"authorizing"})
    panel.post("/api/sim/card/present", json={"outcome": "approved"})
    ended = until_state(panel, sale["id"], {"voided", "needs_review"})
    assert ended["state"] == "voided"
    assert ended["instruction"] == "not delivered: you were not charged"
    totals = panel.get("/api/sim/card/settlement").json()["totals"]
    assert totals["captured_cents"] == 0 and totals["reverted_cents"] == 150
    assert panel.get("/api/sim").json()["vending"]["slots"]["B1"]["fault"] == "jammed"


def test_place_an_enrolled_demo_finger_from_the_panel(panel: httpx.Client) -> None:
    library = panel.get("/api/sim").json()["fingerprint"]["library"]
    assert library == {"1": "alice", "2": "bob"}
    sale = panel.post("/api/sales", json={"slot": "A1", "method": "account"}).json()
    until_state(panel, sale["id"], {"authorizing"})
    panel.post("/api/sim/fingerprint/place", json={"finger": "bob"})
    assert until_state(panel, sale["id"], {"completed", "declined"})["state"] == "completed"
    panel.post("/api/sim/fingerprint/lift")


def test_unplugging_the_card_reader_leaves_fingerprint_payment(panel: httpx.Client) -> None:
    assert panel.post("/api/sim/card/unplug").is_success
    deadline = time.monotonic() + 5
    while panel.get("/api/catalog").json()["payment_methods"] != ["account"]:
        assert time.monotonic() < deadline, "the card reader never went offline"
        time.sleep(0.05)
    assert panel.post("/api/sim/card/replug").is_success
    deadline = time.monotonic() + 15
    while "card" not in panel.get("/api/catalog").json()["payment_methods"]:
        assert time.monotonic() < deadline, "the card reader never came back"
        time.sleep(0.1)


def test_bad_panel_requests_get_our_error_shape(panel: httpx.Client) -> None:
    bad = panel.post("/api/sim/vending/fault", json={"slot": "A1", "fault": "on fire"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    unknown = panel.post("/api/sim/vending/fault", json={"slot": "Z9", "fault": "jammed"})
    assert unknown.status_code == 422 and "Z9" in unknown.json()["error"]["message"]


# Off a Pi, gpiozero says which pin libraries it could not load before it gives up.
@pytest.mark.filterwarnings("ignore::gpiozero.exc.PinFactoryFallback")
def test_no_simulator_panel_without_simulators(settings: Settings, tmp_path: Path) -> None:
    layout = tmp_path / "slots.toml"
    layout.write_text(DEFAULT_LAYOUT_TOML)
    real = Settings(database=settings.database, card="qibixx:///dev/null0",
                    vending=f"gpio-spiral://?layout={layout}", fingerprint="r30x:///dev/null1")
    app = create_app(real)
    paths = [*app.openapi()["paths"], *(getattr(route, "path", "") for route in app.routes)]
    assert "/api/catalog" in paths
    assert not any(str(path).startswith(("/api/sim", "/dev")) for path in paths)
    with TestClient(app, client=("127.0.0.1", 1), base_url="http://localhost") as client:
        assert client.get("/api/sim").status_code == 404

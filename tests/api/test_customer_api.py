"""The customer API over real HTTP: catalog, sales, cancel, the event stream, who may call."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from drivers.base import AuthorizationOutcome, DispenseOutcome
from kiosk.app import create_app
from kiosk.config import Settings
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles


def wait_for_end(http: httpx.Client, sale_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sale: dict[str, Any] = http.get(f"/api/sales/{sale_id}").json()
        if sale["terminal"]:
            return sale
        time.sleep(0.02)
    raise AssertionError(f"sale {sale_id} did not end")


def by_code(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {slot["code"]: slot for slot in catalog["slots"]}


def test_catalog_lists_the_planogram_with_prices_and_payments(http: httpx.Client) -> None:
    catalog = http.get("/api/catalog").json()
    slots = by_code(catalog)
    assert len(slots) == 12
    assert slots["A1"]["product"]["name"] == "Still Water 500 ml"
    assert slots["A1"]["price_cents"] == 120 and slots["A1"]["stock_state"] == "available"
    assert catalog["in_service"] is True and catalog["currency"] == "EUR"
    assert catalog["payment_methods"] == ["card", "account"]


def test_card_purchase_end_to_end(http: httpx.Client, doubles: Doubles) -> None:
    created = http.post("/api/sales", json={"slot": "c3", "method": "card"})
    assert created.status_code == 201
    sale = created.json()
    # Created and asking for the payment, in one commit: the customer is told what to do.
    assert (sale["slot"], sale["price_cents"], sale["state"], sale["instruction"]) == (
        "C3", 210, "authorizing", "present your card")
    ended = wait_for_end(http, sale["id"])
    assert ended["state"] == "completed" and ended["instruction"] == "take your product"
    assert doubles.card.captured == ["ref-1"]
    assert by_code(http.get("/api/catalog").json())["C3"]["stock_state"] == "sold_out"


def test_the_catalog_shows_each_change_to_the_database_at_once(
    http: httpx.Client, settings: Settings
) -> None:
    # The catalog keeps its last answer for as long as nothing was committed since.
    assert by_code(http.get("/api/catalog").json())["C3"]["stock_state"] == "available"
    sale = http.post("/api/sales", json={"slot": "C3", "method": "card"}).json()
    assert wait_for_end(http, sale["id"])["state"] == "completed"
    assert by_code(http.get("/api/catalog").json())["C3"]["stock_state"] == "sold_out"
    other = sqlite3.connect(settings.database)  # another process: a technician's tool
    with other:
        other.execute("UPDATE slot SET price_cents = 125 WHERE code = 'A1'")
    other.close()
    assert by_code(http.get("/api/catalog").json())["A1"]["price_cents"] == 125


def test_second_sale_while_one_runs_is_409_busy(http: httpx.Client, doubles: Doubles) -> None:
    doubles.card.gate.close()
    first = http.post("/api/sales", json={"slot": "A1", "method": "card"}).json()
    second = http.post("/api/sales", json={"slot": "A2", "method": "card"})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "busy"
    cancelled = http.post(f"/api/sales/{first['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert http.post(f"/api/sales/{first['id']}/cancel").json()["state"] == "cancelled"


def test_jammed_vend_tells_the_customer_they_were_not_charged(
    http: httpx.Client, doubles: Doubles
) -> None:
    doubles.vending.outcome = DispenseOutcome.JAMMED
    sale = http.post("/api/sales", json={"slot": "B2", "method": "card"}).json()
    ended = wait_for_end(http, sale["id"])
    assert ended["state"] == "voided"
    assert ended["instruction"] == "not delivered: you were not charged"
    assert by_code(http.get("/api/catalog").json())["B2"]["stock_state"] == "disabled"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"slot": "A1"}, 422, "invalid_request"),
        ({"slot": "A1", "method": "cash"}, 422, "invalid_request"),
        ({"slot": "A1; DROP TABLE sale", "method": "card"}, 422, "invalid_request"),
        ({"slot": "Z9", "method": "card"}, 409, "slot_unavailable"),
        ({"slot": "A1", "method": "card", "price_cents": 1}, 422, "invalid_request"),
    ],
)
def test_bad_sale_requests_get_our_error_shape(
    http: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    response = http.post("/api/sales", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_not_json_at_all_is_a_4xx(http: httpx.Client) -> None:
    response = http.post("/api/sales", content=b"\x00\xff{",
                         headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_unknown_sale_is_404(http: httpx.Client) -> None:
    response = http.get("/api/sales/no-such-sale")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def events(kiosk: RunningKiosk) -> Iterator[tuple[str, dict[str, Any]]]:
    with httpx.Client(base_url=kiosk.url, timeout=10) as client, \
            client.stream("GET", "/api/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        topic = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                topic = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield topic, json.loads(line.removeprefix("data: "))


def test_event_stream_gives_current_state_first_then_every_step(
    kiosk: RunningKiosk, http: httpx.Client
) -> None:
    stream = events(kiosk)
    first, second = next(stream), next(stream)
    assert first[0] == "service" and first[1]["in_service"] is True
    assert second[0] == "devices" and second[1]["card"]["state"] == "ok"
    sale_id: list[str] = []
    threading.Thread(target=lambda: sale_id.append(
        http.post("/api/sales", json={"slot": "A4", "method": "account"}).json()["id"])).start()
    seen: list[tuple[str, str]] = []
    for topic, data in stream:
        if topic == "sale":
            seen.append((data["state"], data["instruction"]))
            if data["terminal"]:
                break
    assert seen[0] == ("authorizing", "place your finger")
    assert seen[-1] == ("completed", "take your product")


def test_reconnecting_client_gets_the_sale_in_progress_first(
    kiosk: RunningKiosk, http: httpx.Client, doubles: Doubles
) -> None:
    doubles.card.gate.close()
    sale = http.post("/api/sales", json={"slot": "A1", "method": "card"}).json()
    stream = events(kiosk)
    snapshot = [next(stream) for _ in range(3)]
    assert snapshot[2][0] == "sale" and snapshot[2][1]["id"] == sale["id"]
    assert snapshot[2][1]["instruction"] == "present your card"
    doubles.card.outcome = AuthorizationOutcome.DECLINED
    doubles.card.gate.open()
    assert wait_for_end(http, sale["id"])["state"] == "declined"


def client_from(settings: Settings, doubles: Doubles, address: str) -> TestClient:
    return TestClient(create_app(settings, doubles.as_devices()), client=(address, 40000),
                      base_url="http://192.168.1.2:8000")


def test_lan_address_may_not_use_the_customer_api(settings: Settings, doubles: Doubles) -> None:
    with client_from(settings, doubles, "192.168.1.50") as client:
        for response in (client.get("/api/catalog"),
                         client.post("/api/sales", json={"slot": "A1", "method": "card"})):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
        assert doubles.card.authorizations == []


def test_trusted_network_may_use_the_customer_api(settings: Settings, doubles: Doubles) -> None:
    trusting = settings.model_copy(update={"trusted_networks": (
        __import__("ipaddress").ip_network("192.168.1.0/24"),)})
    with TestClient(create_app(trusting, doubles.as_devices()), base_url="http://192.168.1.2",
                    client=("192.168.1.50", 40000)) as client:
        assert client.get("/api/catalog").status_code == 200


def test_cross_origin_requests_are_refused(http: httpx.Client, kiosk: RunningKiosk) -> None:
    evil = http.post("/api/sales", json={"slot": "A1", "method": "card"},
                     headers={"origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "cross_origin"
    own = http.get("/api/catalog", headers={"origin": kiosk.url})
    assert own.status_code == 200


def test_a_foreign_host_name_is_refused_against_dns_rebinding(http: httpx.Client) -> None:
    rebound = http.post("/api/sales", json={"slot": "A1", "method": "card"},
                        headers={"host": "evil.example:8000",
                                 "origin": "http://evil.example:8000"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "bad_host"
    assert http.get("/api/catalog", headers={"host": "localhost:8000"}).status_code == 200


def test_readyz_tells_the_lan_only_whether_the_kiosk_sells(
    settings: Settings, doubles: Doubles
) -> None:
    with client_from(settings, doubles, "192.168.1.50") as client:
        body = client.get("/readyz").json()
    assert body["ready"] is True
    assert not {"devices", "database", "event_loop"} & set(body)


def test_every_answer_carries_the_security_headers(http: httpx.Client) -> None:
    for path in ("/", "/api/catalog", "/no/such/page", "/readyz"):
        headers = http.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"

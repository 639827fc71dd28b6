"""Diagnostics: test vends, the readers' details, re-initialising the card reader, the live tail."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from drivers.base import DispenseOutcome
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.models import Slot
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles
from tests.doubles import BrokenVending, FakeFingerprint, OfflineCard
from tests.maintenance.conftest import NAME, SECRET, audit

DIAGNOSTICS = "/api/maintenance/diagnostics"

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", f"{DIAGNOSTICS}/test-vend", {"slot": "A1"}),
    ("GET", f"{DIAGNOSTICS}/fingerprint", None),
    ("GET", f"{DIAGNOSTICS}/card", None),
    ("POST", f"{DIAGNOSTICS}/card/reinitialise", None),
    ("GET", f"{DIAGNOSTICS}/event-loop", None),
    ("GET", f"{DIAGNOSTICS}/events", None),
]




def stock(settings: Settings, code: str) -> int:
    database = Database(settings.database)
    with database.session() as session:
        slot = session.exec(select(Slot).where(Slot.code == code)).one()
    database.dispose()
    return slot.stock


@contextlib.contextmanager
def logged_in(kiosk: RunningKiosk) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kiosk.url, timeout=20) as client:
        me = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        yield client


def test_every_diagnostics_route_wants_a_login(anonymous: httpx.Client) -> None:
    for method, path, body in ROUTES:
        answer = anonymous.request(method, path, json=body)
        assert answer.status_code == 401, (method, path)
        assert answer.json()["error"]["code"] == "login_required"


def test_diagnostics_changes_without_csrf_token_are_refused(
    tech: httpx.Client, doubles: Doubles
) -> None:
    for method, path, body in ROUTES:
        if method == "GET":
            continue
        answer = tech.request(method, path, json=body, headers={"X-CSRF-Token": ""})
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "csrf"
    assert doubles.vending.dispensed == []


# --- test vends -------------------------------------------------------------------------------


def test_test_vend_turns_the_slot_once_and_is_audited(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    answer = tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "a1"})
    assert answer.status_code == 200, answer.text
    vend = answer.json()
    assert (vend["slot"], vend["outcome"], vend["delivered"]) == ("A1", "delivered", True)
    assert vend["motor_seconds"] == 0.01 and vend["seconds"] >= 0
    assert (vend["stock_before"], vend["stock_after"]) == (8, 7)
    assert doubles.vending.dispensed == ["A1"]
    assert doubles.card.authorizations == []  # no payment
    assert stock(settings, "A1") == 7
    entry = audit(settings, "test_vend")[-1]
    assert (entry.actor, entry.target, entry.before) == (NAME, "A1", {"stock": 8})
    assert entry.after == {"stock": 7, "outcome": "delivered", "nudges": 0,
                           "motor_seconds": 0.01, "price_cents": 120}


def test_jammed_test_vend_reports_the_jam_and_keeps_the_stock(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    doubles.vending.outcome = DispenseOutcome.JAMMED
    vend = tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "B2"}).json()
    assert (vend["outcome"], vend["delivered"], vend["stock_after"]) == ("jammed", False, 6)
    assert stock(settings, "B2") == 6
    assert audit(settings, "test_vend")[-1].after["outcome"] == "jammed"  # type: ignore[index]


def test_test_vend_of_an_unknown_or_malformed_slot_is_refused(
    tech: httpx.Client, doubles: Doubles
) -> None:
    unknown = tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "Z9"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_slot"
    for body in ({"slot": "A-1"}, {"slot": ""}, {}, {"slot": "A1", "pay": True}):
        answer = tech.post(f"{DIAGNOSTICS}/test-vend", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == "invalid_request"
    assert doubles.vending.dispensed == []


def test_test_vend_is_refused_while_a_sale_runs(
    tech: httpx.Client, anonymous: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    doubles.card.gate.close()
    sale = anonymous.post("/api/sales", json={"slot": "A1", "method": "card"}).json()
    busy = tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "A2"})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "busy"
    assert doubles.vending.dispensed == [] and audit(settings, "test_vend") == []
    assert anonymous.post(f"/api/sales/{sale['id']}/cancel").json()["state"] == "cancelled"
    assert tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "A2"}).status_code == 200


def test_a_customer_cannot_start_a_sale_during_a_test_vend(
    tech: httpx.Client, anonymous: httpx.Client, doubles: Doubles
) -> None:
    doubles.vending.gate.close()
    with httpx.Client(base_url=str(tech.base_url), cookies=tech.cookies,
                      headers=tech.headers, timeout=20) as other:
        answers: list[httpx.Response] = []
        vend = threading.Thread(target=lambda: answers.append(
            other.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "A3"})))
        vend.start()
        try:
            deadline = time.monotonic() + 10
            while not doubles.vending.gate.entered.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = anonymous.post("/api/sales", json={"slot": "A1", "method": "card"})
            assert refused.status_code == 409
            assert "test vend A3" in refused.json()["error"]["message"]
        finally:
            doubles.vending.gate.open()
            anonymous.get("/healthz")  # wakes the server's loop to see the opened gate
            vend.join(timeout=20)
    assert answers[0].status_code == 200 and doubles.vending.dispensed == ["A3"]


@pytest.fixture
def broken_kiosk(settings: Settings, technician: str) -> Iterator[RunningKiosk]:
    with RunningKiosk(settings, Doubles(BrokenVending(), OfflineCard(),
                                        FakeFingerprint())) as running:
        yield running


def test_offline_devices_are_refused_with_503(broken_kiosk: RunningKiosk,
                                              settings: Settings) -> None:
    with logged_in(broken_kiosk) as tech:
        vend = tech.post(f"{DIAGNOSTICS}/test-vend", json={"slot": "A1"})
        assert vend.status_code == 503
        assert vend.json()["error"]["code"] == "mechanism_unavailable"
        assert "GPIO chip busy" in vend.json()["error"]["message"]
        card = tech.post(f"{DIAGNOSTICS}/card/reinitialise")
        assert card.status_code == 503 and card.json()["error"]["code"] == "reader_unavailable"
        status = tech.get(f"{DIAGNOSTICS}/card").json()
        assert status["device"]["state"] == "offline" and status["enabled"] is False
    assert audit(settings, "test_vend") == audit(settings, "card_reinitialise") == []


# --- readers ----------------------------------------------------------------------------------


def test_fingerprint_details_compare_the_library_with_the_members(
    tech: httpx.Client, doubles: Doubles
) -> None:
    doubles.fingerprint.pages |= {7}
    details = tech.get(f"{DIAGNOSTICS}/fingerprint").json()
    assert details["device"]["state"] == "ok" and details["error"] == ""
    assert details["templates"] == 3 and details["used_pages"] == [1, 2, 7]
    assert details["enrolled_members"] == 2
    assert details["orphan_pages"] == [7] and details["missing_pages"] == []
    assert details["enrolment"] is None


def test_card_reader_is_reinitialised_by_disabling_and_enabling(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    status = tech.get(f"{DIAGNOSTICS}/card").json()
    assert status["device"]["state"] == "ok" and status["enabled"] is True
    again = tech.post(f"{DIAGNOSTICS}/card/reinitialise")
    assert again.status_code == 200 and again.json()["enabled"] is True
    assert doubles.card.enabled is True
    entry = audit(settings, "card_reinitialise")[-1]
    assert entry.actor == NAME
    assert entry.before == {"state": "ok", "reason": "test double ready"}
    assert entry.after == {"state": "ok", "reason": "test double ready", "enabled": True}


def test_card_reader_stays_disabled_while_out_of_service(
    tech: httpx.Client, doubles: Doubles
) -> None:
    tech.post("/api/maintenance/service", json={"in_service": False, "reason": "cleaning"})
    answer = tech.post(f"{DIAGNOSTICS}/card/reinitialise").json()
    assert answer["enabled"] is False and doubles.card.enabled is False
    tech.post("/api/maintenance/service", json={"in_service": True})


# --- the event loop ---------------------------------------------------------------------------


def a_disk_that_takes(seconds: float) -> None:
    time.sleep(seconds)


def test_event_loop_figures_show_a_block_of_the_servers_loop(
    kiosk: RunningKiosk, tech: httpx.Client, settings: Settings
) -> None:
    quiet = tech.get(f"{DIAGNOSTICS}/event-loop")
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["event_loop"]["threshold_ms"] == settings.loop_lag_warning * 1000
    kiosk.server.servers[0].get_loop().call_soon_threadsafe(a_disk_that_takes, 0.4)
    time.sleep(0.6)
    lag = tech.get(f"{DIAGNOSTICS}/event-loop").json()["event_loop"]
    assert set(lag) == {"lag_p99_ms", "lag_max_ms", "window_s", "blocked_episodes",
                        "threshold_ms"}
    assert lag["lag_max_ms"] >= 350 and lag["blocked_episodes"] >= 1
    assert lag["window_s"] == 300


# --- the live tail ----------------------------------------------------------------------------


def frames(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    topic = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            topic = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield topic, json.loads(line.removeprefix("data: "))


def test_live_tail_streams_device_and_enrolment_events(kiosk: RunningKiosk,
                                                       tech: httpx.Client) -> None:
    carol = tech.post("/api/maintenance/members", json={"name": "Carol"}).json()
    with httpx.Client(base_url=kiosk.url, cookies=tech.cookies, timeout=20) as viewer, \
            viewer.stream("GET", f"{DIAGNOSTICS}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = frames(response)
        topic, service = next(stream)
        assert topic == "service" and service["in_service"] is True
        topic, devices = next(stream)
        assert topic == "devices" and devices["card"]["state"] == "ok"
        tech.post(f"/api/maintenance/members/{carol['id']}/enrolment", json={"consent": True})
        seen = []
        for topic, data in stream:
            assert topic in ("device", "enrolment", "service", "sale", "catalog"), topic
            if topic == "enrolment":
                seen.append(data)
                if data["state"] != "running":
                    break
    assert seen[0] == {"member": carol["id"], "page": 0, "step": "starting",
                       "state": "running", "reason": ""}
    assert seen[-1] == {"member": carol["id"], "page": 0, "step": "starting",
                        "state": "succeeded", "reason": ""}


def test_live_tail_needs_a_live_session(anonymous: httpx.Client) -> None:
    answer = anonymous.get(f"{DIAGNOSTICS}/events")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/json")

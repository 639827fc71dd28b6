"""No request and no sale takes a database connection on the event loop's thread.

A connection is taken for a read or a write; on a Pi's SD card either may wait for the disk,
and the event loop is what hears the devices. So every connection the kiosk takes after its
start-up is recorded with the thread that took it, while a technician goes through every
page of the maintenance API and a customer buys by card; none may be the loop's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from sqlalchemy import event

from kiosk.machine import Machine
from tests.api.conftest import RunningKiosk


def test_no_request_and_no_sale_takes_a_connection_on_the_event_loop(
    kiosk: RunningKiosk, tech: httpx.Client,
) -> None:
    machine: Machine = kiosk.app.state.machine
    takers: list[str] = []

    def checkout(*_: Any) -> None:
        takers.append(threading.current_thread().name)

    for engine in (machine.db.engine, machine.db.ledger_engine):
        event.listen(engine, "checkout", checkout)
    loop_thread = kiosk.thread.name

    def ok(answer: httpx.Response) -> dict[str, Any]:
        assert answer.status_code < 300, f"{answer.request.url}: {answer.text}"
        json = answer.content and answer.headers.get("content-type", "").startswith(
            "application/json")
        return answer.json() if json else {}

    ok(tech.get("/api/catalog"))
    sale = ok(tech.post("/api/sales", json={"slot": "A1", "method": "card"}))
    deadline = time.monotonic() + 10
    while ok(tech.get(f"/api/sales/{sale['id']}"))["state"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ok(tech.get("/api/catalog"))
    ok(tech.get("/api/maintenance/dashboard"))
    ok(tech.post("/api/maintenance/service", json={"in_service": False, "reason": "cleaning"}))
    ok(tech.post("/api/maintenance/service", json={"in_service": True}))
    ok(tech.get("/api/maintenance/planogram"))
    ok(tech.patch("/api/maintenance/planogram/A1", json={"price_cents": 130}))
    ok(tech.post("/api/maintenance/planogram/A1/restock"))
    ok(tech.post("/api/maintenance/restock"))
    ok(tech.get("/api/maintenance/products"))
    member = ok(tech.post("/api/maintenance/members", json={"name": "Off Loop"}))
    ok(tech.get("/api/maintenance/members"))
    ok(tech.get(f"/api/maintenance/members/{member['id']}"))
    ok(tech.post(f"/api/maintenance/members/{member['id']}/balance",
                 json={"kind": "top_up", "amount_cents": 500, "reason": "cash"}))
    ok(tech.get("/api/maintenance/sales"))
    ok(tech.get(f"/api/maintenance/sales/{sale['id']}"))
    assert tech.get("/api/maintenance/sales.csv").status_code == 200
    ok(tech.get("/api/maintenance/diagnostics/fingerprint"))
    ok(tech.get("/api/maintenance/diagnostics/card"))
    ok(tech.post("/api/maintenance/diagnostics/test-vend", json={"slot": "B1"}))
    assert tech.get("/api/maintenance/dex").status_code == 200
    ok(tech.post("/api/maintenance/logout"))

    assert len(takers) > 20, takers  # the listener heard the requests
    assert loop_thread not in takers, (
        f"{takers.count(loop_thread)} of {len(takers)} connections were taken on the loop")

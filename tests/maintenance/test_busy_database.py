"""A swamped database: technician requests hear "busy" at once, and sales are recorded anyway.

Every technician request runs on a worker thread with a connection from the shared pool; the
sale ledger writes through its scribe on a connection of its own. So when every pooled
connection is taken (a flood of requests) or another writer holds SQLite's lock, a technician
is answered 503 ``busy`` within the pool's or the lock's short timeout, the event loop goes on,
and a customer's sale is still recorded step by step.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from kiosk.db import POOL_TIMEOUT, REQUEST_BUSY_TIMEOUT_MS
from kiosk.machine import Machine
from tests.api.conftest import RunningKiosk

COMPLETED = ["created", "authorizing", "authorized", "dispensing", "dispensed", "completed"]


@contextmanager
def every_pooled_connection_taken(machine: Machine) -> Iterator[None]:
    engine: Any = machine.db.engine
    size = engine.pool.size() + engine.pool._max_overflow
    held = [engine.raw_connection() for _ in range(size)]
    try:
        yield
    finally:
        for connection in held:
            connection.close()


def history(kiosk: RunningKiosk, sale_id: str) -> list[str]:
    with sqlite3.connect(f"file:{kiosk.app.state.machine.db.path}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute(
            "SELECT to_state FROM sale_event WHERE sale_id = ? ORDER BY id", (sale_id,))]


def wait_for_history(kiosk: RunningKiosk, sale_id: str, wanted: list[str]) -> None:
    deadline = time.monotonic() + 10
    while history(kiosk, sale_id) != wanted:
        assert time.monotonic() < deadline, history(kiosk, sale_id)
        time.sleep(0.02)


def test_a_flood_that_takes_every_connection_gets_busy_and_a_sale_is_still_recorded(
    kiosk: RunningKiosk, tech: httpx.Client,
) -> None:
    machine: Machine = kiosk.app.state.machine
    with every_pooled_connection_taken(machine):
        asked = time.monotonic()
        answer = tech.get("/api/maintenance/planogram")
        waited = time.monotonic() - asked
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "busy"
        assert answer.headers["Retry-After"] == "2"
        assert waited < POOL_TIMEOUT + 3, f"the refusal took {waited:.1f} s"
        # The customer's sale is recorded on the ledger's own connection meanwhile.
        sale = tech.post("/api/sales", json={"slot": "A1", "method": "card"})
        assert sale.status_code == 201, sale.text
        wait_for_history(kiosk, sale.json()["id"], COMPLETED)
        assert tech.get("/healthz").status_code == 200
    # Once the flood is over, the same request is served.
    assert tech.get("/api/maintenance/planogram").status_code == 200
    assert tech.get("/readyz").status_code == 200


def test_a_writer_holding_the_lock_makes_a_technician_write_busy_not_the_kiosk_broken(
    kiosk: RunningKiosk, tech: httpx.Client,
) -> None:
    database = kiosk.app.state.machine.db.path
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing, and slow about it
    try:
        asked = time.monotonic()
        answer = tech.post("/api/maintenance/members", json={"name": "Lockie"})
        waited = time.monotonic() - asked
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "busy"
        assert waited < REQUEST_BUSY_TIMEOUT_MS / 1000 + 3
    finally:
        other.execute("ROLLBACK")
        other.close()
    # A lock held too long is not a failing disk: the kiosk stayed in service throughout.
    ready = tech.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert tech.post("/api/maintenance/members", json={"name": "Lockie"}).status_code == 201

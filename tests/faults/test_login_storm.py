"""A login storm from the LAN while a card sale is dispensing: the kiosk does not notice.

Twenty hosts (loopback addresses 127.0.0.2 ... 127.0.0.21) try names and secrets as fast as
they are answered, unknown names and the real technician's alike, while the spiral turns.
Once, 16 such logins froze the kiosk for 30 s and a motor ran for minutes. Now the logins
wait without holding a connection or a thread, hash on a bounded worker, and are refused
early per address; the sale is recorded on the ledger's own connection. So ``/healthz`` is
answered promptly throughout, the sale completes, exactly one product falls and the motor
is off.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kiosk import technicians
from kiosk.config import Settings
from kiosk.db import Database
from tests.faults.conftest import KioskFactory
from tests.faults.processes import (
    CardReaderProcess,
    HealthzPoller,
    card_sale_until,
    sale_history,
    wait_for_state,
)

pytestmark = pytest.mark.timeout(180)

#: A revolution slow enough for the storm to rage while the product is on its way.
SLOW_SPIRAL = "sim://?revolution=3&start_limit=1&turn_limit=6&drop_limit=1&nudges=0"
HOSTS = [f"127.0.0.{n}" for n in range(2, 22)]
TECHNICIAN, SECRET = "tess", "correct horse battery"
ANSWER_WITHIN = 0.5


class Storm:
    """Each host logs in with a wrong secret, again and again, until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._host, args=(address, n), daemon=True)
                         for n, address in enumerate(HOSTS)]

    def __enter__(self) -> Storm:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _host(self, address: str, n: int) -> None:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=self.url, transport=transport, timeout=60) as client:
            attempt = 0
            while not self._stop.is_set():
                attempt += 1
                name = TECHNICIAN if n % 2 else f"nobody{n}-{attempt}"
                answer = client.post("/api/maintenance/login",
                                     json={"name": name, "secret": f"guess {attempt}"})
                with self._lock:
                    self.answers[answer.status_code] += 1


@pytest.fixture
def technician(settings: Settings) -> Iterator[str]:
    database = Database(settings.database)
    technicians.add(database, TECHNICIAN, SECRET)
    database.dispose()
    yield TECHNICIAN


def vending(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/api/sim")
    answer.raise_for_status()
    state: dict[str, Any] = answer.json()["vending"]
    return state


def test_a_login_storm_while_dispensing_leaves_the_sale_and_the_motor_alone(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess, technician: str,
) -> None:
    kiosk = kiosk_process(vending=SLOW_SPIRAL)
    assert kiosk.start() == "in service", kiosk.status
    with kiosk.client() as client:
        before = vending(client)["slots"]["A1"]["delivered"]
        with HealthzPoller(kiosk.url) as poller:
            sale_id = card_sale_until(client, card_reader, "A1", "dispensing")
            with Storm(kiosk.url) as storm:
                assert wait_for_state(client, sale_id, "completed", "needs_review", "voided",
                                      timeout=30) == "completed"
                time.sleep(1)  # the storm goes on after the sale: the motor stays off
            machine = vending(client)
        assert max(poller.waits) < ANSWER_WITHIN, (
            f"/healthz took {max(poller.waits):.2f} s during the storm")
    assert sale_history(kiosk.database, sale_id)[-3:] == ["dispensing", "dispensed", "completed"]
    assert machine["slots"]["A1"]["delivered"] == before + 1, "exactly one product fell"
    assert machine["running"] == [], "a motor is still running"
    assert machine["slots"]["A1"]["motor_seconds"] < 3 * 1.5, machine["slots"]["A1"]
    # The storm was answered, and refused: never let in, never a server error.
    assert sum(storm.answers.values()) >= len(HOSTS), storm.answers
    assert set(storm.answers) <= {401, 423, 429}, storm.answers
    assert storm.answers[429] > 0, storm.answers

"""A storm of failed logins from many addresses costs the attacker, not the kiosk: the event
loop keeps answering and the logins hold no more than a few of the pool's connections.

Before, each failed login slept its growing delay holding a pooled connection and verified
on the event loop; 16 at once froze the kiosk for the pool's timeout, a motor running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx

from kiosk import technicians
from kiosk.api import login_limit
from tests.api.conftest import RunningKiosk
from tests.maintenance.conftest import NAME

#: Loopback source addresses the storm comes from (127.0.0.0/8 is all the kiosk's own).
ADDRESSES = [f"127.0.0.{n}" for n in range(2, 8)]
#: From each address: one more than its burst, half with the known name, half with others.
TRIES_EACH = login_limit.BURST + 1
#: How often ``/healthz`` is asked, and how soon it must answer.
POLL_EVERY = 0.02
ANSWER_WITHIN = 0.5


class Watch(threading.Thread):
    """Asks ``/healthz`` every 20 ms from a thread of its own, noting how long each answer took
    and how many of the kiosk's pooled database connections were checked out meanwhile."""

    def __init__(self, kiosk: RunningKiosk) -> None:
        super().__init__(daemon=True)
        self.kiosk = kiosk
        self.stop = threading.Event()
        self.answers: list[tuple[int, float]] = []
        self.most_checked_out = 0

    def run(self) -> None:
        pool = self.kiosk.app.state.machine.db.engine.pool
        with httpx.Client(base_url=self.kiosk.url, timeout=35) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                status = client.get("/healthz").status_code
                self.answers.append((status, time.monotonic() - started))
                self.most_checked_out = max(self.most_checked_out, pool.checkedout())
                time.sleep(POLL_EVERY)

    @property
    def slowest(self) -> float:
        return max(took for _status, took in self.answers)


async def try_login(kiosk: RunningKiosk, address: str, number: int) -> int:
    name = NAME if number % 2 else f"nobody-{address}-{number}"
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=kiosk.url, transport=transport,
                                 timeout=60) as client:
        answer = await client.post("/api/maintenance/login",
                                   json={"name": name, "secret": "a wrong guess"})
        if answer.status_code in (429, 503):
            assert int(answer.headers["Retry-After"]) >= 1
        return answer.status_code


async def test_a_login_storm_leaves_the_kiosk_answering_and_its_connections_free(
    kiosk: RunningKiosk,
) -> None:
    watch = Watch(kiosk)
    watch.start()
    try:
        await asyncio.sleep(0.1)  # a few answers before the storm
        statuses = Counter(await asyncio.gather(*(
            try_login(kiosk, address, number)
            for number in range(TRIES_EACH) for address in ADDRESSES)))
        await asyncio.sleep(0.1)
    finally:
        watch.stop.set()
        await asyncio.to_thread(watch.join, 40)
    assert sum(statuses.values()) == len(ADDRESSES) * TRIES_EACH >= 20
    assert set(statuses) <= {401, 423, 429, 503}, statuses
    assert statuses[401] >= login_limit.BURST and statuses[429] >= len(ADDRESSES), statuses
    assert all(status == 200 for status, _took in watch.answers)
    assert len(watch.answers) >= 20
    assert watch.slowest < ANSWER_WITHIN, f"/healthz took {watch.slowest:.2f} s in the storm"
    assert watch.most_checked_out <= technicians.DATABASE_AT_ONCE + 1

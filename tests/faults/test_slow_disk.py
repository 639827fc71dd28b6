"""A disk as slow as a Pi's SD card on a bad day: the kiosk keeps answering while it writes.

The server runs with bench/slow_sync.c preloaded, so every fsync and fdatasync (each commit of
the ledger) takes longer than the whole budget a ``/healthz`` answer gets here. While card
sales run, a poller asks ``/healthz`` every 20 ms: had any commit run on the event loop, one
of those answers would have waited for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import slow_sync
from tests.faults.conftest import KioskFactory
from tests.faults.processes import (
    CardReaderProcess,
    HealthzPoller,
    card_sale_until,
    sale_history,
)

pytestmark = pytest.mark.timeout(180)

#: Every sync waits this long: a commit is at least this slow.
SYNC_SECONDS = 0.6
#: ... and no answer of a live kiosk may take this long.
ANSWER_WITHIN = 0.4


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return slow_sync.build(tmp_path_factory.mktemp("slow-sync"))


def test_card_sales_on_a_slow_disk_never_hold_up_an_answer(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess, shim: Path, tmp_path: Path,
) -> None:
    counted = tmp_path / "syncs"
    kiosk = kiosk_process()
    kiosk.env.update(slow_sync.environment(shim, SYNC_SECONDS * 1000, count_file=counted))
    assert kiosk.start(timeout=60) == "in service", kiosk.status
    sales: list[str] = []
    with kiosk.client() as client, HealthzPoller(kiosk.url) as poller:
        for slot in ("A1", "B1"):
            sales.append(card_sale_until(client, card_reader, slot, "completed"))
    kiosk.stop()
    # The disk really was that slow: every commit synced (and waited) at least once.
    assert int(counted.read_text()) >= 4 * len(sales)
    for sale_id in sales:
        assert sale_history(kiosk.database, sale_id) == [
            "created", "authorizing", "authorized", "dispensing", "dispensed", "completed"]
    assert max(poller.waits) < ANSWER_WITHIN, (
        f"/healthz took {max(poller.waits):.3f} s while the ledger synced "
        f"({SYNC_SECONDS} s a sync): the event loop waited for the disk")
    assert len(poller.waits) > 50, "the poller hardly ran"

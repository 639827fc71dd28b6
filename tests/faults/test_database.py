"""A read-only or full database: the kiosk goes out of service instead of selling without a record.

The server is a real ``kiosk serve`` process and the faults are the filesystem's own:

- *read-only*: the database file, its WAL and shared-memory files and their directory lose
  their write bits. A process that opened the file before keeps writing through its descriptors,
  so the kiosk must notice the way the next connection (or a restart) would.
- *writes fail*: as on a filesystem remounted read-only after an error, every write the server
  makes fails, through descriptors it already holds too. The test lowers the server's
  RLIMIT_FSIZE to 0 (CPython ignores SIGXFSZ, so a write fails with EFBIG instead of killing it).
- *full*: the server's RLIMIT_FSIZE is set a few pages above the ledger's files, so the WAL or
  the database cannot grow past it, as on a full disk; raising the limit gives the space back.

Tests and CI run as root, and root writes through any file's mode: the server then runs
without CAP_DAC_OVERRIDE, so the modes bind it as they bind any owner (see :data:`CONFINED`).
"""

from __future__ import annotations

import contextlib
import os
import resource
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiosk import technicians
from kiosk.db import Database
from tests.faults.conftest import KioskFactory
from tests.faults.processes import (
    CardReaderProcess,
    KioskProcess,
    ledger_file,
    sale_history,
    sale_row,
    unfinished,
    wait_for,
    wait_for_state,
)

NAME, SECRET = "tess", "correct horse battery"

#: How long the kiosk may take to notice, or to come back: its watcher probes every 5 s.
NOTICE_S = 15.0

#: CAP_DAC_OVERRIDE: write through any file's mode (root has it, unless dropped).
DAC_OVERRIDE = 1

#: Run as root, the server would write through any file's mode. This launcher drops the
#: capabilities that let it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, then
#: becomes ``kiosk serve`` in the same process: still root and the owner of its files (and of
#: the simulators' ptys), but bound by their modes like any owner.
CONFINED = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        raise OSError(ctypes.get_errno(), "cannot drop capability %d" % capability)
os.execv(sys.executable, [sys.executable, "-m", "kiosk.cli", *sys.argv[1:]])
"""


def writes_through_file_modes() -> bool:
    """Whether this process (and so the server it starts) ignores file modes, as root does."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return os.geteuid() == 0
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> DAC_OVERRIDE & 1)


class ConfinedKiosk(KioskProcess):
    """``kiosk serve``, bound by file modes even as root."""

    def command(self) -> list[str]:
        if writes_through_file_modes():
            return [sys.executable, "-c", CONFINED, "serve"]
        return super().command()

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    @contextlib.contextmanager
    def file_size_limit(self, limit: int) -> Iterator[None]:
        """No file may grow (nor be written) past ``limit`` bytes by the server, meanwhile."""
        soft, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield
        finally:
            if self.running:
                resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (soft, hard))


def confined(kiosk_process: KioskFactory, **settings: str) -> ConfinedKiosk:
    """The fixture's server (stopped with the others at the end), started the confined way."""
    kiosk = kiosk_process(**settings)
    kiosk.__class__ = ConfinedKiosk
    assert isinstance(kiosk, ConfinedKiosk)
    return kiosk


def add_technician(database: Path) -> None:
    db = Database(database)
    try:
        technicians.add(db, NAME, SECRET)
    finally:
        db.dispose()


@contextlib.contextmanager
def technician(kiosk: KioskProcess) -> Iterator[httpx.Client]:
    """A technician logged in on the maintenance page (before the fault: logging in writes)."""
    with kiosk.client() as client:
        me = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
        assert me.status_code == 200, me.text
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        yield client


@contextlib.contextmanager
def read_only(database: Path) -> Iterator[None]:
    """The database, its WAL and shared memory and their directory lose their write bits."""
    paths = [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm")]
    modes = {path: stat.S_IMODE(path.stat().st_mode)
             for path in [*paths, database.parent] if path.exists()}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


# --- what the kiosk says -------------------------------------------------------------------------

def not_ready(client: httpx.Client) -> dict[str, Any] | None:
    """The 503 body of /readyz, or None while the kiosk is ready."""
    answer = client.get("/readyz")
    if answer.status_code == 200:
        return None
    assert answer.status_code == 503, answer.text
    body: dict[str, Any] = answer.json()
    return body


def reasons(client: httpx.Client) -> str:
    """Why the kiosk cannot sell, in one line; "" while it can."""
    body = not_ready(client)
    return "; ".join(body["service"]["reasons"]) if body else ""


def database_reasons(service: dict[str, Any], database: Path) -> list[str]:
    return [reason for reason in service["reasons"]
            if f"database {database} refuses writes" in reason]


def assert_out_of_service_because_of_the_database(
    client: httpx.Client, tech: httpx.Client, database: Path, why: str,
) -> None:
    """/readyz, a customer's sale and the maintenance dashboard all say the database is why."""
    body = not_ready(client)
    assert body is not None, "the kiosk says it is ready"
    assert body["error"]["code"] == "not_ready"
    assert f"database {database} refuses writes: " in body["error"]["message"]
    assert why in body["error"]["message"], body["error"]["message"]
    assert body["database"] == {"path": str(database), "writable": False}
    refused = client.post("/api/sales", json={"slot": "B1", "method": "card"})
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "out_of_service"
    assert f"database {database} refuses writes" in error["message"]
    board = tech.get("/api/maintenance/dashboard")
    assert board.status_code == 200, board.text
    dashboard = board.json()
    assert dashboard["service"]["in_service"] is False
    assert any(why in reason for reason in database_reasons(dashboard["service"], database)), \
        dashboard["service"]
    assert dashboard["database"]["writable"] is False
    assert why in dashboard["database"]["error"]


def sell_by_card(client: httpx.Client, card_reader: CardReaderProcess, slot: str = "A1") -> str:
    """A customer buys from ``slot`` by card; the sale's end state."""
    started = client.post("/api/sales", json={"slot": slot, "method": "card"})
    assert started.status_code == 201, started.text
    sale_id: str = started.json()["id"]
    wait_for_state(client, sale_id, "authorizing")
    card_reader.say("approve")
    return wait_for_state(client, sale_id, "completed", "needs_review", "voided", "cancelled")


def delivered(client: httpx.Client, slot: str) -> int:
    """How many products the vending mechanism (its simulator) really let fall from ``slot``."""
    answer = client.get("/api/sim")
    answer.raise_for_status()
    count: int = answer.json()["vending"]["slots"][slot]["delivered"]
    return count


def sales_count(database: Path) -> int:
    with ledger_file(database) as db:
        count: int = db.execute("SELECT COUNT(*) FROM sale").fetchone()[0]
    return count


# --- the tests -----------------------------------------------------------------------------------

def test_a_read_only_database_takes_the_idle_kiosk_out_of_service_until_it_is_writable(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = confined(kiosk_process)
    add_technician(kiosk.database)
    assert kiosk.start() == "in service"
    with kiosk.client() as client, technician(kiosk) as tech:
        assert not_ready(client) is None
        sales_before = sales_count(kiosk.database)
        with read_only(kiosk.database):
            # Nobody buys anything: the kiosk's own check must notice.
            wait_for("the kiosk out of service", lambda: not_ready(client), timeout=NOTICE_S)
            assert_out_of_service_because_of_the_database(
                client, tech, kiosk.database, "attempt to write a readonly database")
        assert sales_count(kiosk.database) == sales_before
        wait_for("the kiosk back in service", lambda: not_ready(client) is None,
                 timeout=NOTICE_S)
        board = tech.get("/api/maintenance/dashboard").json()
        assert board["service"]["in_service"] is True
        assert board["database"] == {"path": str(kiosk.database), "writable": True, "error": ""}
        assert sell_by_card(client, card_reader) == "completed"
    report = card_reader.report()
    assert report["totals"]["captured_count"] == 1
    assert report["totals"]["open_sessions"] == 0


#: A spiral that turns for 3 s, so that the test can take the disk away between the recorded
#: ``dispensing`` and the drop.
SLOW_SPIRALS = "revolution=3&start_limit=1&turn_limit=6&drop_limit=0.5&nudges=0"


@pytest.mark.parametrize("moment", ["authorizing", "dispensing"])
def test_a_sale_whose_writes_fail_delivers_and_charges_nothing_unrecorded(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess, moment: str,
) -> None:
    kiosk = confined(kiosk_process, vending=f"sim://?{SLOW_SPIRALS}")
    add_technician(kiosk.database)
    kiosk.start()
    with kiosk.client() as client, technician(kiosk) as tech:
        started = client.post("/api/sales", json={"slot": "A1", "method": "card"})
        assert started.status_code == 201, started.text
        sale_id = started.json()["id"]
        wait_for_state(client, sale_id, "authorizing")
        if moment == "dispensing":
            card_reader.say("approve")
            wait_for_state(client, sale_id, "dispensing")
        # A filesystem remounted read-only: no new connection can write, nor the open ones.
        with read_only(kiosk.database), kiosk.file_size_limit(0):
            if moment == "authorizing":
                card_reader.say("approve")
            wait_for("the kiosk out of service", lambda: not_ready(client), timeout=NOTICE_S)
            # The sale's drive has given up: the reader's session is closed, nothing captured.
            wait_for("the card session closed", lambda: (
                (totals := card_reader.report()["totals"])["open_sessions"] == 0
                and totals["pending_requests"] == 0), timeout=NOTICE_S)
            wait_for("the drive to stop", lambda: "could not be settled" in reasons(client),
                     timeout=NOTICE_S)
            assert_out_of_service_because_of_the_database(
                client, tech, kiosk.database, "disk I/O error")
            # The ledger still says what was last recorded: the step the fault cut off is not.
            assert client.get(f"/api/sales/{sale_id}").json()["state"] == moment
            dropped = delivered(client, "A1")
        report = card_reader.report()
        assert report["totals"]["captured_cents"] == 0, report
        # Writes work again: the kiosk settles the sale from its last recorded state by itself.
        wait_for("the kiosk back in service", lambda: not_ready(client) is None,
                 timeout=NOTICE_S)
        assert unfinished(kiosk.database) == []
        sale = sale_row(kiosk.database, sale_id)
        history = sale_history(kiosk.database, sale_id)
        if moment == "authorizing":
            # Never authorized in the ledger, so never vended: cancelled, as after a crash.
            assert dropped == 0
            assert history == ["created", "authorizing", "cancelled"]
        else:
            # The product fell while nothing could be recorded: outcome unknown to the ledger,
            # so the payment is given back and a technician checks the slot.
            assert dropped == 1
            assert history == ["created", "authorizing", "authorized", "dispensing",
                               "needs_review"]
            assert "check" in sale["reason"]
            board = tech.get("/api/maintenance/dashboard").json()
            assert any(slot["slot"] == "A1" and slot["fault"] for slot in board["attention"])
        assert sale["state"] == history[-1]
        report = card_reader.report()
        assert report["totals"]["captured_cents"] == 0, report
        assert report["totals"]["open_sessions"] == 0, report
        assert [t["status"] for t in report["transactions"]] == ["reverted"]
        # And it sells again.
        assert sell_by_card(client, card_reader, "B1") == "completed"
    assert card_reader.report()["totals"]["captured_count"] == 1


def buy_until_the_disk_fills(client: httpx.Client, card_reader: CardReaderProcess) -> list[str]:
    """Customers buy from A1 by card until one is refused or breaks off; each sale's state."""
    outcomes: list[str] = []
    for _customer in range(10):
        outcome = buy_unless_it_breaks_off(client, card_reader)
        if outcome is None:
            return outcomes
        outcomes.append(outcome)
        if outcome != "completed":
            return outcomes
    raise AssertionError(f"{len(outcomes)} sales and the disk is not full yet")


def buy_unless_it_breaks_off(client: httpx.Client, card_reader: CardReaderProcess) -> str | None:
    """One card sale from A1: its last recorded state, or None when it was refused at once."""
    started = client.post("/api/sales", json={"slot": "A1", "method": "card"})
    if started.status_code != 201:
        assert started.status_code == 503, started.text
        assert started.json()["error"]["code"] in ("not_recorded", "out_of_service")
        return None
    sale = f"/api/sales/{started.json()['id']}"

    def state() -> str:
        found: str = client.get(sale).json()["state"]
        return found

    def at_the_reader() -> str:
        if state() == "authorizing":
            return "asking for a card"
        return "broken off" if not_ready(client) else ""

    if wait_for("the sale at the reader, or broken off", at_the_reader,
                timeout=NOTICE_S) == "asking for a card":
        card_reader.say("approve")
    wait_for("the sale to end, or to break off", lambda: (
        client.get(sale).json()["terminal"] or not_ready(client)), timeout=NOTICE_S)
    return state()


def test_a_full_disk_takes_the_kiosk_out_of_service_until_a_whole_sale_fits_again(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = confined(kiosk_process)
    add_technician(kiosk.database)
    kiosk.start()
    database = kiosk.database
    with kiosk.client() as client, technician(kiosk) as tech:
        # Room for one sale, about: no file of the ledger may grow more than 16 pages past
        # the larger of the database and its WAL.
        ledger_files = [database, database.with_name(database.name + "-wal")]
        limit = max(path.stat().st_size for path in ledger_files) + 16 * 4096
        with kiosk.file_size_limit(limit):
            outcomes = buy_until_the_disk_fills(client, card_reader)
            assert outcomes[:1] == ["completed"], "not even the first sale fitted"
            wait_for("the kiosk out of service", lambda: not_ready(client), timeout=NOTICE_S)
            assert_out_of_service_because_of_the_database(
                client, tech, database, "disk I/O error")
            # A page or two may still fit, a sale does not: through two more of its checks,
            # the kiosk stays out of service rather than start sales it cannot record.
            refusals = kiosk.log_text().count(f"database {database} refuses writes")

            def checked_twice_more() -> bool:
                assert not_ready(client) is not None, "back in service on a full disk"
                return kiosk.log_text().count(f"database {database} refuses writes") >= \
                    refusals + 2

            wait_for("two more checks of the database", checked_twice_more,
                     timeout=2 * NOTICE_S, every=0.1)
            physically = delivered(client, "A1")
        # Room again: the kiosk comes back by itself, and settles what the failure left.
        wait_for("the kiosk back in service", lambda: not_ready(client) is None,
                 timeout=NOTICE_S)
        assert unfinished(database) == []
        with ledger_file(database) as db:
            sales = [dict(row) for row in db.execute("SELECT state, price_cents FROM sale")]
            vended = {row[0] for row in db.execute(
                "SELECT sale_id FROM sale_event WHERE to_state = 'dispensing'")}
        # Every product that fell belongs to a sale the ledger recorded as vending first.
        assert physically == len(vended), (physically, sales)
        # Every charge is a completed sale's; nothing else was captured, nor left open.
        report = card_reader.report()
        completed = [sale for sale in sales if sale["state"] == "completed"]
        assert report["totals"]["captured_count"] == len(completed), (report, sales)
        assert report["totals"]["captured_cents"] == sum(s["price_cents"] for s in completed)
        assert report["totals"]["open_sessions"] == 0, report
        # From another slot: A1 is flagged for a stock check if the disk filled mid-vend.
        assert sell_by_card(client, card_reader, slot="B1") == "completed"

"""Whether the database takes writes: what ends a refusal, and the kiosk's own check.

The fault suite (tests/faults/test_database.py) makes real files read-only or full under a
``kiosk serve`` process; these tests pin down the rules in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from kiosk import machine as machine_module
from kiosk.config import Settings
from kiosk.db import ROOM_FOR_A_SALE, ROOM_PROBE_KEY, Database
from kiosk.events import Event
from kiosk.machine import Machine
from tests.conftest import Doubles
from tests.waiting import eventually


def refusal(message: str, code: int) -> OperationalError:
    """What SQLAlchemy raises when SQLite refuses a commit with ``code``."""
    cause = sqlite3.OperationalError(message)
    cause.sqlite_errorcode = code
    try:
        raise OperationalError("COMMIT", {}, cause) from cause
    except OperationalError as exc:
        return exc


def write_through_the_pool(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE slot SET price_cents = price_cents + 1"))


@contextlib.contextmanager
def moved_away(path: Path) -> Iterator[None]:
    """The file is gone for a connection opened now; open ones keep writing to it.

    The in-process stand-in for a file made read-only (which root, running the tests, ignores).
    """
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        yield
    finally:
        aside.rename(path)


async def next_service(events: asyncio.Queue[Event]) -> dict[str, Any]:
    """The next ``service`` event the screens are sent."""
    async with asyncio.timeout(3):
        while (event := await events.get()).topic != "service":
            pass
    return event.data


def free_pages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        count: int = connection.execute("PRAGMA freelist_count").fetchone()[0]
    return count


def test_a_full_disk_is_not_forgiven_by_one_small_write(database: Database) -> None:
    database.note_write_failure(refusal("database or disk is full", sqlite3.SQLITE_FULL))
    assert database.write_error.endswith("refuses writes: database or disk is full")
    write_through_the_pool(database)
    database.write_error = ""  # what the ledger says after each commit that went through
    assert not database.writable
    database.probe_write()
    assert database.writable
    # The probe wrote a sale's worth and gave it back: the room stays, as free pages.
    assert free_pages(database.path) * 4096 >= ROOM_FOR_A_SALE
    with contextlib.closing(sqlite3.connect(database.path)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM kiosk_state WHERE key = ?",
                                  (ROOM_PROBE_KEY,)).fetchone()[0] == 0


def test_a_failing_disk_needs_the_probe_too(database: Database) -> None:
    database.note_write_failure(refusal("disk I/O error", 778))  # SQLITE_IOERR_WRITE
    database.write_error = ""
    assert not database.writable
    database.probe_write()
    assert database.writable


def test_a_lock_that_ended_is_forgiven_by_the_next_commit(database: Database) -> None:
    database.note_write_failure(refusal("database is locked", sqlite3.SQLITE_BUSY))
    assert not database.writable
    database.write_error = ""
    assert database.writable


def test_the_probe_writes_as_a_new_connection_would(database: Database) -> None:
    write_through_the_pool(database)
    with moved_away(database.path):
        database.probe_write()
        assert not database.writable
        assert "refuses writes: unable to open database file" in database.write_error
        # The pool's connection still writes to the file it opened; that changes nothing.
        write_through_the_pool(database)
        database.write_error = ""
        assert not database.writable
    database.probe_write()
    assert database.writable
    write_through_the_pool(database)


async def test_the_kiosk_checks_its_database_while_idle_and_comes_back_by_itself(
    settings: Settings, doubles: Doubles, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(machine_module, "DATABASE_RETRY_SECONDS", 0.05)
    kiosk = Machine(settings, doubles.as_devices())
    await kiosk.start()
    try:
        async with kiosk.bus.subscribe() as events:
            with moved_away(settings.database):
                await eventually(lambda: not kiosk.service.status().in_service)
                reasons = kiosk.service.status().reasons
                assert any(f"database {settings.database} refuses writes" in r for r in reasons)
                assert (await next_service(events))["in_service"] is False
                await eventually(lambda: not doubles.card.enabled)
            await eventually(lambda: kiosk.service.status().in_service)
            assert (await next_service(events))["in_service"] is True
        # Once told, the screens are not told again at every check.
        await eventually(lambda: doubles.card.enabled)
        async with kiosk.bus.subscribe() as events:
            await asyncio.sleep(0.3)  # six checks
            assert all(events.get_nowait().topic != "service" for _ in range(events.qsize()))
    finally:
        await kiosk.stop()

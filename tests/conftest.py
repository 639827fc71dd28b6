"""Fixtures shared by the whole suite: a real SQLite file per test, settings, the machine."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.base import Device, DeviceKind
from kiosk import db as kiosk_db
from kiosk import demo
from kiosk.config import Settings
from kiosk.machine import Machine
from tests.doubles import FakeCard, FakeFingerprint, FakeVending

#: A simulated mechanism whose longest vend (1.9 s) fits the tests' 3 s dispense timeout.
QUICK_VENDING = "sim://?revolution=0.2&turn_limit=1&drop_limit=0.2&nudges=1"


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the demo data, made once and copied for each test."""
    path = tmp_path_factory.mktemp("template") / "kiosk.db"
    kiosk_db.upgrade(path)
    database = kiosk_db.Database(path)
    demo.seed(database)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


@pytest.fixture
def settings(tmp_path: Path, seeded_template: Path) -> Settings:
    database = tmp_path / "kiosk.db"
    shutil.copy(seeded_template, database)
    return Settings(
        database=database,
        state_dir=tmp_path,
        # Quick mechanics, so that a quick dispense timeout still outlasts a vend.
        vending=QUICK_VENDING,
        payment_timeout=2.0,
        dispense_timeout=3.0,
        settle_timeout=1.0,
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[kiosk_db.Database]:
    database = kiosk_db.Database(settings.database)
    yield database
    database.dispose()


@dataclass
class Doubles:
    vending: FakeVending
    card: FakeCard
    fingerprint: FakeFingerprint

    def as_devices(self) -> dict[DeviceKind, Device]:
        return {
            DeviceKind.VENDING: self.vending,
            DeviceKind.CARD: self.card,
            DeviceKind.FINGERPRINT: self.fingerprint,
        }


@pytest.fixture
def doubles() -> Doubles:
    return Doubles(FakeVending(), FakeCard(), FakeFingerprint())


@pytest.fixture
async def machine(settings: Settings, doubles: Doubles) -> AsyncIterator[Machine]:
    machine = Machine(settings, doubles.as_devices())
    await machine.start()
    yield machine
    await machine.stop()

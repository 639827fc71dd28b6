"""Fixtures for the fault suite: device processes that outlive the server, and the server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk import demo
from kiosk.config import Settings
from tests.faults.processes import (
    FAST_SPIRALS,
    CardReaderProcess,
    FingerprintProcess,
    KioskProcess,
)

#: The demo members' fingers and the pages the seeded ledger gives them.
DEMO_FINGERS = tuple((finger, page) for _name, page, finger, _balance in demo.MEMBERS)


@pytest.fixture
def card_reader(tmp_path: Path) -> Iterator[CardReaderProcess]:
    reader = CardReaderProcess(tmp_path / "card.log")
    yield reader
    reader.close()


@pytest.fixture
def fingerprint_reader(tmp_path: Path) -> Iterator[FingerprintProcess]:
    reader = FingerprintProcess(tmp_path / "fingerprint.log", DEMO_FINGERS)
    yield reader
    reader.close()


KioskFactory = Callable[..., KioskProcess]


@pytest.fixture
def kiosk_process(
    tmp_path: Path, settings: Settings, card_reader: CardReaderProcess,
    fingerprint_reader: FingerprintProcess,
) -> Iterator[KioskFactory]:
    """Make the server (not yet started) on the seeded ledger and the two device processes.

    Keyword arguments become ``KIOSK_*`` settings, e.g. ``vending="sim://?revolution=3"``.
    """
    made: list[KioskProcess] = []

    def make(**settings_env: str) -> KioskProcess:
        env = {
            "KIOSK_CARD": card_reader.url(), "KIOSK_FINGERPRINT": fingerprint_reader.url(),
            "KIOSK_VENDING": f"sim://?{FAST_SPIRALS}",
            "KIOSK_PAYMENT_TIMEOUT": "20", "KIOSK_DISPENSE_TIMEOUT": "20",
            "KIOSK_SETTLE_TIMEOUT": "3",
        }
        env.update({f"KIOSK_{key.upper()}": value for key, value in settings_env.items()})
        kiosk = KioskProcess(tmp_path, settings.database, env)
        made.append(kiosk)
        return kiosk

    yield make
    for kiosk in made:
        if kiosk.running:
            kiosk.stop()

"""Fixtures for the fingerprint reader: a simulated module on a real pty, and the real driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.fingerprint.r30x import R30xFingerprintReader
from drivers.serial_link import Backoff
from simulators.fingerprint import FingerprintSimulator


def fast_reader(port: str, **overrides: Any) -> R30xFingerprintReader:
    """The real driver with timings short enough for tests."""
    settings: dict[str, Any] = {
        "reply_timeout": 0.25,
        "poll_interval": 0.01,
        "frame_gap": 0.03,
        "backoff": Backoff(initial=0.02, maximum=0.1),
    }
    settings.update(overrides)
    return R30xFingerprintReader(port, **settings)




@pytest.fixture
def library_file(tmp_path: Path) -> Path:
    return tmp_path / "fingers.json"


@pytest.fixture
def sim(library_file: Path) -> Iterator[FingerprintSimulator]:
    with FingerprintSimulator(library_file) as simulator:
        yield simulator


@pytest.fixture
async def reader(sim: FingerprintSimulator) -> AsyncIterator[R30xFingerprintReader]:
    driver = fast_reader(sim.port)
    await driver.open()
    assert driver.health.ok, driver.health.reason
    yield driver
    await driver.close()

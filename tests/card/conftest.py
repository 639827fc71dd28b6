"""Fixtures for the card reader: a simulated Qibixx interface on a real pty, and the real driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.base import DeviceEvent
from drivers.card.qibixx import QibixxCardReader
from drivers.card.timing import ReaderTiming
from simulators.card import CardSimulator

#: Deadlines short enough for tests, long enough for a loaded CI machine.
FAST = ReaderTiming(
    reply_timeout=0.5, startup_timeout=0.5, settle=0.05, retry_initial=0.02, retry_max=0.1
)


def fast_reader(port: str) -> QibixxCardReader:
    """The real driver with timings short enough for tests."""
    return QibixxCardReader(port, timing=FAST)




@pytest.fixture
def sim() -> Iterator[CardSimulator]:
    with CardSimulator(init_delay=0.01, reader_timeout=5.0) as simulator:
        yield simulator


@pytest.fixture
async def reader(sim: CardSimulator) -> AsyncIterator[QibixxCardReader]:
    driver = fast_reader(sim.port)
    await driver.open()
    assert driver.health.ok, driver.health.reason
    yield driver
    await driver.close()


@pytest.fixture
def events(reader: QibixxCardReader) -> list[DeviceEvent]:
    """Every event the reader emits from now on."""
    seen: list[DeviceEvent] = []
    reader.on_event(seen.append)
    return seen

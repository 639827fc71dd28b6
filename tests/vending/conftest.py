"""A fast machine: the real driver on a simulator whose spirals turn in 0.2 s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.base import DeviceEvent
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from simulators.vending import VendingSimulator

REVOLUTION = 0.2
#: Timings measured by the driver and by the simulator agree this well, even on a busy runner.
SLACK = 0.03
#: Limits scaled to the fast machine, with room for a busy test runner.
FAST = {"start_limit": 0.2, "turn_limit": 0.8, "drop_limit": 0.2, "nudges": 3,
        "nudge_fraction": 0.25}


@pytest.fixture
def simulator() -> Iterator[VendingSimulator]:
    with VendingSimulator(revolution=REVOLUTION, fall_time=0.01, drop_pulse=0.005) as sim:
        yield sim


@pytest.fixture
async def mechanism(simulator: VendingSimulator) -> AsyncIterator[GpioSpiralMechanism]:
    driver = GpioSpiralMechanism(simulator.layout.with_timing(**FAST),
                                 pin_factory=simulator.factory)
    await driver.open()
    yield driver
    await driver.close()


def motor_started(mechanism: GpioSpiralMechanism) -> asyncio.Event:
    """An event set as soon as the mechanism starts a motor."""
    started = asyncio.Event()

    def hear(event: DeviceEvent) -> None:
        if event.name == "motor_started":
            started.set()

    mechanism.on_event(hear)
    return started

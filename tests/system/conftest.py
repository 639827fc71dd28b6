"""The machine with every device simulated: real drivers on real ptys and mock pins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from drivers.base import DeviceKind
from kiosk.config import Settings
from kiosk.machine import Machine
from simulators.card import CardSimulator
from simulators.fingerprint import FingerprintSimulator
from simulators.vending import VendingSimulator

#: Fast mechanics and a reader that waits for the test to present a card.
FAST_SPIRALS = "sim://?revolution=0.05&start_limit=0.5&turn_limit=1.0&drop_limit=0.3&nudges=2"
MANUAL_READER = "sim://?auto=off&settle=0.05"


class Simulated:
    def __init__(self, machine: Machine) -> None:
        sims = machine.hardware.simulators
        self.card = cast(CardSimulator, sims[DeviceKind.CARD])
        self.fingerprint = cast(FingerprintSimulator, sims[DeviceKind.FINGERPRINT])
        self.vending = cast(VendingSimulator, sims[DeviceKind.VENDING])


@pytest.fixture
def sim_settings(settings: Settings) -> Settings:
    return Settings(
        database=settings.database, state_dir=settings.state_dir,
        vending=FAST_SPIRALS, card=MANUAL_READER, fingerprint="sim://",
        payment_timeout=5.0, dispense_timeout=10.0, settle_timeout=3.0,
    )


@pytest.fixture
async def machine(sim_settings: Settings) -> AsyncIterator[Machine]:
    machine = Machine(sim_settings)
    await machine.start()
    yield machine
    await machine.stop()


@pytest.fixture
def sims(machine: Machine) -> Simulated:
    return Simulated(machine)

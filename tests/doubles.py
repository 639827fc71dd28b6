"""In-memory device doubles for tests of the sale engine, recovery and the app.

They implement the driver interfaces with scripted answers and record what the kiosk asked,
so a test can say "the card was captured once" or "the motor never ran". Shipped code never
uses them: the kiosk runs real drivers against simulators.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from drivers.base import (
    Authorization,
    AuthorizationOutcome,
    CardReader,
    DeviceError,
    DeviceRejected,
    DeviceTimeout,
    DispenseOutcome,
    DispenseResult,
    EnrollProgress,
    FingerMatch,
    FingerprintReader,
    HealthState,
    VendingMechanism,
)
from kiosk.demo import PLANOGRAM


@dataclass
class Gate:
    """Holds a device call until the test opens it: lets a test stop a sale in a given state."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def pass_through(self) -> None:
        if not self.closed:
            return
        self.entered.set()
        await self.opened.wait()

    def close(self) -> None:
        self.closed = True

    def open(self) -> None:
        self.opened.set()


class FakeVending(VendingMechanism):
    def __init__(self, slots: frozenset[str] | None = None) -> None:
        super().__init__("test://vending")
        self._slots = slots or frozenset(code for code, *_ in PLANOGRAM)
        self.outcome = DispenseOutcome.DELIVERED
        #: Raised by the next dispense instead of answering (a crashed mechanism).
        self.error: Exception | None = None
        self.dispensed: list[str] = []
        self.gate = Gate()
        self.running = 0
        self.most_running = 0
        #: Fire the drop beam's event before the turn ends (the real driver does at the drop).
        self.drop_early = False

    async def open(self) -> None:
        self._set_health(HealthState.OK, "test double ready")

    async def close(self) -> None:
        self._set_health(HealthState.OFFLINE, "closed")

    def slots(self) -> frozenset[str]:
        return self._slots

    async def dispense(self, slot: str) -> DispenseResult:
        if slot not in self._slots:
            raise DeviceRejected("vending", f"no slot {slot}")
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.drop_early:
                self._emit("product_dropped", slot=slot)
            await self.gate.pass_through()
            if self.error is not None:
                raise self.error
            self.dispensed.append(slot)
            return DispenseResult(slot, self.outcome, motor_seconds=0.01)
        finally:
            self.running -= 1

    async def test_slot(self, slot: str) -> DispenseResult:
        return await self.dispense(slot)


class FakeCard(CardReader):
    def __init__(self) -> None:
        super().__init__("test://card")
        self.outcome = AuthorizationOutcome.APPROVED
        self.approved_amount: int | None = None
        self.authorizations: list[Authorization] = []
        self.captured: list[str] = []
        self.voided: list[str] = []
        self.cancels = 0
        #: Error raised by capture / void (a reader that cannot confirm).
        self.settle_error: DeviceError | None = None
        #: Raised by authorize instead of answering (a driver bug, a broken port).
        self.error: Exception | None = None
        self.gate = Gate()
        self.enabled = True

    async def open(self) -> None:
        self._set_health(HealthState.OK, "test double ready")

    async def close(self) -> None:
        self._set_health(HealthState.OFFLINE, "closed")

    async def authorize(self, amount_cents: int, item: int, timeout: float) -> Authorization:
        try:
            await self.gate.pass_through()
        except asyncio.CancelledError:
            self.cancels += 1  # the real driver sends D,REQ,-1 here
            raise
        if self.error is not None:
            raise self.error
        reference = f"ref-{len(self.authorizations) + 1}"
        amount = self.approved_amount if self.approved_amount is not None else amount_cents
        auth = Authorization(self.outcome, amount, reference)
        self.authorizations.append(auth)
        return auth

    async def capture(self, authorization: Authorization) -> None:
        if self.settle_error is not None:
            raise self.settle_error
        self.captured.append(authorization.reference)

    async def void(self, authorization: Authorization) -> None:
        if self.settle_error is not None:
            raise self.settle_error
        self.voided.append(authorization.reference)

    async def cancel(self) -> None:
        self.cancels += 1

    async def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled


class FakeFingerprint(FingerprintReader):
    def __init__(self) -> None:
        super().__init__("test://fingerprint")
        #: The page the next finger matches; None = a finger that matches nothing.
        self.page: int | None = 1
        self.no_finger = False
        self.gate = Gate()
        self.pages: set[int] = {1, 2}

    async def open(self) -> None:
        self._set_health(HealthState.OK, "test double ready")

    async def close(self) -> None:
        self._set_health(HealthState.OFFLINE, "closed")

    async def identify(self, timeout: float) -> FingerMatch | None:
        await self.gate.pass_through()
        if self.no_finger:
            raise DeviceTimeout("fingerprint", "no finger placed")
        return FingerMatch(self.page, 120) if self.page is not None else None

    async def enroll(
        self, page: int, timeout: float, progress: EnrollProgress | None = None
    ) -> None:
        self.pages.add(page)

    async def delete(self, page: int) -> None:
        self.pages.discard(page)

    async def count(self) -> int:
        return len(self.pages)

    async def used_pages(self) -> frozenset[int]:
        return frozenset(self.pages)

    async def erase_all(self) -> None:
        self.pages.clear()


class OfflineCard(FakeCard):
    async def open(self) -> None:
        self._set_health(HealthState.OFFLINE, "unplugged")


class BrokenVending(FakeVending):
    async def open(self) -> None:
        raise RuntimeError("GPIO chip busy")


class OfflineFingerprint(FakeFingerprint):
    async def open(self) -> None:
        self._set_health(HealthState.OFFLINE, "unplugged")


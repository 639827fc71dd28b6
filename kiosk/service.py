"""Whether the kiosk can sell right now, which payments it can take, and why not.

In service means: the recovery of earlier sales has finished, the database takes writes, the
mechanism is ok, at least one payment path is ok, and no technician took the kiosk out of
service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import DeviceKind, HealthState
from kiosk.db import Database
from kiosk.hardware import Hardware
from kiosk.models import KioskState, utcnow
from kiosk.states import PaymentMethod

PAYMENT_DEVICE = {
    PaymentMethod.CARD: DeviceKind.CARD,
    PaymentMethod.ACCOUNT: DeviceKind.FINGERPRINT,
}


@dataclass(frozen=True)
class ServiceStatus:
    in_service: bool
    payment_methods: tuple[PaymentMethod, ...]
    #: Why the kiosk cannot sell (empty when it can), in words a technician can act on.
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "in_service": self.in_service,
            "payment_methods": [method.value for method in self.payment_methods],
            "reasons": list(self.reasons),
        }


class Service:
    """The kiosk's service state, derived each time from the parts it depends on."""

    def __init__(self, db: Database, hardware: Hardware) -> None:
        self.db = db
        self.hardware = hardware
        self.recovered = False
        #: Set by a technician who took the kiosk out of service: who and why.
        self.held_by = ""
        #: Set when a sale could not be settled (the database refused the writes).
        self.unsettled = ""

    HOLD_KEY = "out_of_service"

    def load_hold(self) -> None:
        """Take up a technician's hold from before a restart."""
        with self.db.session() as session:
            state = session.get(KioskState, self.HOLD_KEY)
        self.held_by = str(state.value.get("hold", "")) if state else ""

    def hold(self, technician: str, reason: str) -> None:
        """Take the kiosk out of service (durably) until :meth:`release`."""
        self._store(f"{technician}: {reason}" if reason else technician)

    def release(self) -> None:
        self._store("")

    def _store(self, hold: str) -> None:
        with self.db.session() as session:
            session.merge(KioskState(key=self.HOLD_KEY, value={"hold": hold}, updated_at=utcnow()))
            session.commit()
        self.held_by = hold

    def status(self) -> ServiceStatus:
        reasons: list[str] = []
        if not self.recovered:
            reasons.append("recovering unfinished sales")
        if not self.db.writable:
            reasons.append(self.db.write_error)
        if self.unsettled:
            reasons.append(self.unsettled)
        if self.held_by:
            reasons.append(f"out of service: {self.held_by}")
        vending = self.hardware.health(DeviceKind.VENDING)
        if vending.state is not HealthState.OK:
            reasons.append(f"vending mechanism {vending.state}: {vending.reason}")
        methods = tuple(
            method for method, kind in PAYMENT_DEVICE.items()
            if self.hardware.health(kind).state is HealthState.OK
        )
        if not methods:
            card = self.hardware.health(DeviceKind.CARD)
            finger = self.hardware.health(DeviceKind.FINGERPRINT)
            reasons.append(
                f"no way to pay: card reader {card.state} ({card.reason}), "
                f"fingerprint reader {finger.state} ({finger.reason})"
            )
        return ServiceStatus(not reasons, methods if not reasons else (), tuple(reasons))

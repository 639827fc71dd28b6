"""The device interfaces the kiosk sees, and the types they share.

The kiosk talks to three devices only through the abstract classes here: a
:class:`VendingMechanism`, a :class:`CardReader` and a :class:`FingerprintReader`.
A driver subclasses one of them and speaks a real device's wire protocol over a
transport (a serial port path, gpiozero pins). It never knows whether a simulator
is on the other side, and it never imports ``kiosk`` or ``fastapi``.

Every method marked abstract below *must* be implemented; the docstring says what
the kiosk relies on. Everything else has a working default a driver *may* extend.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Protocol

log = logging.getLogger(__name__)


class DeviceKind(StrEnum):
    VENDING = "vending"
    CARD = "card"
    FINGERPRINT = "fingerprint"


class HealthState(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True)
class DeviceHealth:
    """What a device can do right now, why, and since when."""

    state: HealthState
    reason: str
    since: datetime
    #: What the device reports about itself (firmware, capacity, port...): shown to technicians.
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state is HealthState.OK


@dataclass(frozen=True)
class DeviceEvent:
    """Something a person may want to see live: a card asked for, a finger placed, a motor on."""

    device: DeviceKind
    name: str
    detail: Mapping[str, object] = field(default_factory=dict)


# --- errors ---------------------------------------------------------------------------------


class DeviceError(Exception):
    """A device could not do what was asked. The message says which device and what happened."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class DeviceUnavailable(DeviceError):
    """The device is not there (port missing, unplugged, not opened, offline); nothing was done."""


class DeviceTimeout(DeviceError):
    """The device did not answer within its deadline."""


class DeviceProtocolError(DeviceError):
    """The device answered with bytes that break its protocol (checksum, framing, sequence)."""


class DeviceRejected(DeviceError):
    """The device understood the request and refused it (wrong password, unknown slot...)."""


# --- the common base ------------------------------------------------------------------------

HealthListener = Callable[[DeviceHealth], None]
EventListener = Callable[[DeviceEvent], None]


class Device(ABC):
    """Health bookkeeping and lifecycle shared by every driver.

    Construction only validates; :meth:`open` talks to the hardware. A subclass reports its
    state with :meth:`_set_health` and live happenings with :meth:`_emit`; listeners are plain
    callables run on the event loop's thread, so they must be quick and must not raise.
    """

    kind: ClassVar[DeviceKind]

    def __init__(self, description: str) -> None:
        #: Where the device is, for people: ``qibixx:///dev/ttyACM0``, ``sim://`` ...
        self.description = description
        self._health = DeviceHealth(HealthState.OFFLINE, "not opened yet", _now())
        self._health_listeners: list[HealthListener] = []
        self._event_listeners: list[EventListener] = []

    @property
    def health(self) -> DeviceHealth:
        return self._health

    def on_health(self, listener: HealthListener) -> None:
        """Call ``listener`` with the new health every time the state or reason changes."""
        self._health_listeners.append(listener)

    def on_event(self, listener: EventListener) -> None:
        """Call ``listener`` with every :class:`DeviceEvent` this device emits."""
        self._event_listeners.append(listener)

    def _set_health(
        self, state: HealthState, reason: str, detail: Mapping[str, object] | None = None
    ) -> None:
        """Record the device's health; listeners hear of it only when state or reason changed."""
        previous = self._health
        merged = dict(previous.detail if detail is None else detail)
        if previous.state is state and previous.reason == reason:
            self._health = DeviceHealth(state, reason, previous.since, merged)
            return
        self._health = DeviceHealth(state, reason, _now(), merged)
        log.log(
            logging.INFO if state is HealthState.OK else logging.WARNING,
            "%s %s: %s (%s)", self.kind, state, reason, self.description,
        )
        for listener in self._health_listeners:
            _call_safely(listener, self._health)

    def _emit(self, name: str, **detail: object) -> None:
        event = DeviceEvent(self.kind, name, detail)
        for listener in self._event_listeners:
            _call_safely(listener, event)

    @abstractmethod
    async def open(self) -> None:
        """Start talking to the device.

        Must return once the first connection attempt has finished, whether it worked or not.
        An absent or unplugged device is not an error here: leave health ``offline`` with the
        reason, and keep reconnecting in the background with exponential backoff until it is
        back. Raise :class:`DeviceError` only for a configuration the device can never accept.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop background work, leave the device safe and release the transport.

        Safe means: no motor running, no vend request or session left open on a reader, no
        capture in progress. Must be idempotent and must not raise.
        """


# --- vending mechanism ----------------------------------------------------------------------


class DispenseOutcome(StrEnum):
    DELIVERED = "delivered"
    #: The spiral turned (and was nudged) but the drop beam never saw a product fall.
    NOT_DROPPED = "not_dropped"
    #: The spiral left home but did not come back in time: the motor was stopped.
    JAMMED = "jammed"
    #: The home switch never opened after the motor started: no motor, or it does not turn.
    MOTOR_MISSING = "motor_missing"
    #: The drop beam was blocked before the turn, so no drop could be seen: nothing moved.
    BEAM_BLOCKED = "beam_blocked"


@dataclass(frozen=True)
class DispenseResult:
    """What a vend did, as the mechanism's sensors saw it."""

    slot: str
    outcome: DispenseOutcome
    #: Extra partial turns given because the product did not drop after the first revolution.
    nudges: int = 0
    #: Total time the slot's motor was powered, in seconds.
    motor_seconds: float = 0.0
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.outcome is DispenseOutcome.DELIVERED


class VendingMechanism(Device):
    """Spiral motors, their home switches and the drop beam across the delivery bin."""

    kind = DeviceKind.VENDING

    @abstractmethod
    def slots(self) -> frozenset[str]:
        """The slot codes (``A1``, ``B3`` ...) this mechanism can turn."""

    @abstractmethod
    async def dispense(self, slot: str) -> DispenseResult:
        """Vend one product from ``slot`` and say whether the drop beam saw it fall.

        A result that is not ``delivered`` is a promise that the sensors saw no product fall.
        Raise :class:`DeviceUnavailable` (or :class:`DeviceRejected` for an unknown slot) only
        when no motor moved. Any other exception means the outcome is unknown. Whatever
        happens, including cancellation of the awaiting task, the motor must be off when this
        returns or raises, and no two motors may ever run at once.
        """

    @abstractmethod
    async def test_slot(self, slot: str) -> DispenseResult:
        """Turn ``slot`` one revolution for a technician, with timings in ``detail``."""


# --- card reader ----------------------------------------------------------------------------


class AuthorizationOutcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    #: The customer cancelled at the reader.
    CANCELLED = "cancelled"
    #: Nobody presented a card before the deadline; the request was cancelled at the reader.
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Authorization:
    """A reader's answer to a vend request. Never holds card data: only amount and reference."""

    outcome: AuthorizationOutcome
    amount_cents: int
    #: Opaque reference of the reader's session, safe to store and to log.
    reference: str = ""
    reason: str = ""

    @property
    def approved(self) -> bool:
        return self.outcome is AuthorizationOutcome.APPROVED


class CardReader(Device):
    """A cashless card reader that authorises first and charges only after the product dropped."""

    kind = DeviceKind.CARD

    @abstractmethod
    async def authorize(self, amount_cents: int, item: int, timeout: float) -> Authorization:
        """Ask the customer for a card to pay ``amount_cents`` for ``item``, and wait.

        Returns when the reader approved or declined, the customer cancelled at the reader, or
        ``timeout`` seconds passed (the request is then cancelled at the reader). An approval
        for any other amount must be voided at the reader and reported as declined. If the
        awaiting task is cancelled, cancel the request at the reader before re-raising.
        Raises :class:`DeviceUnavailable` when the reader is offline.
        """

    @abstractmethod
    async def capture(self, authorization: Authorization) -> None:
        """Complete the charge: the product was delivered. Raise if the reader did not confirm.

        Asked again after the reader confirmed (a retry whose first answer the ledger could
        not record), it confirms again without charging twice.
        """

    @abstractmethod
    async def void(self, authorization: Authorization) -> None:
        """Revert the authorization: the product was not delivered. Raise if not confirmed.

        Confirmed, too, when the session already ended without a charge: voided before, or
        ended by a reader reset (including the kiosk's previous run's session). Raises for
        a session the reader charged.
        """

    @abstractmethod
    async def cancel(self) -> None:
        """Cancel any vend request or session left open on the reader. Harmless when none is."""

    @abstractmethod
    async def set_enabled(self, enabled: bool) -> None:
        """Enable the reader for sales, or disable it while the kiosk is out of service."""


# --- fingerprint reader ---------------------------------------------------------------------


@dataclass(frozen=True)
class FingerMatch:
    """The library page whose template matched the finger, and the module's match score."""

    page: int
    score: int


class EnrollStep(StrEnum):
    PLACE_FINGER = "place_finger"
    LIFT_FINGER = "lift_finger"
    PLACE_AGAIN = "place_again"
    MERGING = "merging"
    STORED = "stored"


EnrollProgress = Callable[[EnrollStep], None]


class FingerprintReader(Device):
    """A fingerprint module that keeps templates in its own flash, addressed by library page.

    Templates and images never leave the module through this interface: the kiosk knows
    only page numbers.
    """

    kind = DeviceKind.FINGERPRINT

    @abstractmethod
    async def identify(self, timeout: float) -> FingerMatch | None:
        """Wait up to ``timeout`` seconds for a finger and search the library for it.

        Returns the match, or ``None`` when a finger was read and matched no template. Raises
        :class:`DeviceTimeout` when no finger was placed in time. Cancellation stops at once.
        """

    @abstractmethod
    async def enroll(
        self, page: int, timeout: float, progress: EnrollProgress | None = None
    ) -> None:
        """Capture a finger twice, merge the captures and store the template at ``page``.

        Calls ``progress`` at each step so a person can be guided. Raises
        :class:`DeviceTimeout` when a step waits longer than ``timeout`` seconds and
        :class:`DeviceRejected` when the captures do not merge or the page is out of range.
        """

    @abstractmethod
    async def delete(self, page: int) -> None:
        """Erase the template at ``page`` from the module's flash."""

    @abstractmethod
    async def count(self) -> int:
        """How many templates the module holds."""

    @abstractmethod
    async def used_pages(self) -> frozenset[int]:
        """The library pages that hold a template."""

    @abstractmethod
    async def erase_all(self) -> None:
        """Erase every template from the module's flash."""


# --- simulators, as the registry sees them ----------------------------------------------------


class Simulator(Protocol):
    """A device emulator running beside the kiosk in place of the hardware."""

    def close(self) -> None:
        """Stop the emulator and release its pty or pins."""


def _now() -> datetime:
    return datetime.now(UTC)


def _call_safely(listener: Callable[[object], None] | Callable[..., None], value: object) -> None:
    # A broken listener (a UI bug) must never take a driver down with it.
    try:
        listener(value)
    except Exception:
        log.exception("device listener %r failed", listener)

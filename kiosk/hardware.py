"""The kiosk's three devices: built from their URLs, opened, watched, closed.

A device that cannot be built or opened does not stop the kiosk: it is reported offline with
the reason, and the kiosk sells with what it has (or goes out of service and says why).
Drivers reconnect by themselves; this module relays their health to the event stream.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from drivers.base import (
    CardReader,
    Device,
    DeviceError,
    DeviceEvent,
    DeviceHealth,
    DeviceKind,
    FingerprintReader,
    HealthState,
    Simulator,
    VendingMechanism,
)
from drivers.registry import build
from kiosk.config import Settings
from kiosk.events import EventBus

log = logging.getLogger(__name__)

class Hardware:
    """Owns the drivers (and the simulators standing in for absent hardware)."""

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        devices: Mapping[DeviceKind, Device] | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self._given = dict(devices or {})
        self.drivers: dict[DeviceKind, Device] = {}
        self.simulators: dict[DeviceKind, Simulator] = {}
        #: Why a device has no driver at all (not installed, failed to build).
        self._missing: dict[DeviceKind, DeviceHealth] = {}
        #: Called after any device's health changed (the machine re-assesses its service).
        self.on_change: list[Callable[[], None]] = []
        #: Called with every device event (the sale engine watches for the drop beam).
        self.on_event: list[Callable[[DeviceEvent], None]] = []

    async def open(self) -> None:
        for kind in DeviceKind:
            self._build(kind)
        results = await asyncio.gather(
            *(driver.open() for driver in self.drivers.values()), return_exceptions=True
        )
        for (kind, driver), result in zip(list(self.drivers.items()), results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s device %s failed to open: %s", kind, driver.description, result)
                self._missing[kind] = _offline(f"failed to open: {result}")
                del self.drivers[kind]
                try:
                    await driver.close()
                except Exception:
                    log.exception("closing %s after a failed open failed", driver.description)

    def _build(self, kind: DeviceKind) -> None:
        driver = self._given.get(kind)
        if driver is None:
            url = self.settings.device_url(kind)
            try:
                attached = build(kind, url, self.settings.state_dir)
            except (DeviceError, ValueError) as exc:  # ValueError: a simulator's bad parameter
                reason = exc.message if isinstance(exc, DeviceError) else str(exc)
                log.error("%s device %s: %s", kind, url, reason)
                self._missing[kind] = _offline(reason, url=str(url))
                return
            driver = attached.driver
            if attached.simulator is not None:
                self.simulators[kind] = attached.simulator
        self.drivers[kind] = driver
        driver.on_health(functools.partial(self._health_changed, kind))
        driver.on_event(self._device_event)

    def health(self, kind: DeviceKind) -> DeviceHealth:
        driver = self.drivers.get(kind)
        if driver is None:
            return self._missing.get(kind) or _offline("not opened")
        return driver.health

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each device's health, in a form for JSON."""
        described: dict[str, dict[str, Any]] = {}
        for kind in DeviceKind:
            health = self.health(kind)
            driver = self.drivers.get(kind)
            described[kind.value] = {
                "state": health.state.value,
                "reason": health.reason,
                "since": health.since.isoformat(),
                "driver": driver.description if driver else str(self.settings.device_url(kind)),
                "simulated": kind in self.simulators,
                "detail": dict(health.detail),
            }
        return described

    @property
    def vending(self) -> VendingMechanism | None:
        driver = self.drivers.get(DeviceKind.VENDING)
        return driver if isinstance(driver, VendingMechanism) else None

    @property
    def card(self) -> CardReader | None:
        driver = self.drivers.get(DeviceKind.CARD)
        return driver if isinstance(driver, CardReader) else None

    @property
    def fingerprint(self) -> FingerprintReader | None:
        driver = self.drivers.get(DeviceKind.FINGERPRINT)
        return driver if isinstance(driver, FingerprintReader) else None

    async def close(self) -> None:
        for driver in self.drivers.values():
            try:
                await driver.close()
            except Exception:  # close must not raise; a driver that does must not stop the rest
                log.exception("closing %s failed", driver.description)
        for simulator in self.simulators.values():
            try:
                simulator.close()
            except Exception:
                log.exception("closing the %s simulator failed", simulator)
        self.drivers.clear()
        self.simulators.clear()

    def _health_changed(self, kind: DeviceKind, health: DeviceHealth) -> None:
        self.bus.publish("device", {"device": kind.value, "state": health.state.value,
                                    "reason": health.reason})
        for callback in self.on_change:
            callback()

    def _device_event(self, event: DeviceEvent) -> None:
        for callback in self.on_event:
            callback(event)
        self.bus.publish("device", {"device": event.device.value, "event": event.name,
                                    **{k: v for k, v in event.detail.items()}})


def _offline(reason: str, **detail: object) -> DeviceHealth:
    return DeviceHealth(HealthState.OFFLINE, reason, datetime.now(UTC), detail)

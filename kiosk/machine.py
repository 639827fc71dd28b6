"""The vending machine as a whole: its ledger, its devices, its service state, its sales.

Built from settings (and, in tests, from given drivers); started by the app's lifespan in the
order the design asks for: database and schema, devices, recovery, then open for sale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from drivers.base import Device, DeviceError, DeviceKind
from kiosk import demo
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.events import EventBus
from kiosk.hardware import Hardware
from kiosk.ledger import Ledger, NotRecorded
from kiosk.recovery import RESTART, Recovered, recover
from kiosk.sales import Sales
from kiosk.service import Service, ServiceStatus

if TYPE_CHECKING:
    from simulators.fingerprint import FingerprintSimulator

log = logging.getLogger(__name__)


#: How often the kiosk checks that its database takes writes (and, after a refusal, again).
DATABASE_RETRY_SECONDS = 5.0


class Machine:
    def __init__(self, settings: Settings, devices: Mapping[DeviceKind, Device] | None = None):
        self.settings = settings
        self.bus = EventBus()
        self.db = Database(settings.database)
        self.ledger = Ledger(self.db)
        self.hardware = Hardware(settings, self.bus, devices)
        self.service = Service(self.db, self.hardware)
        self.sales = Sales(self.ledger, self.hardware, self.service, settings, self.bus)
        self.recovered: list[Recovered] = []
        self._reader_enabled: bool | None = None
        self._reader_sync: asyncio.Task[None] | None = None
        self._resync = False
        self._watch: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The service status the screens were last told.
        self._announced: ServiceStatus | None = None
        self.hardware.on_change.append(self.service_changed)
        self.sales.on_finished.append(self.service_changed)

    async def start(self) -> None:
        """Open everything and settle the past; raises SchemaError for a database it cannot use."""
        self._loop = asyncio.get_running_loop()
        self.db.check()
        self.service.load_hold()
        await self.hardware.open()
        simulated_reader = self.hardware.simulators.get(DeviceKind.FINGERPRINT)
        if simulated_reader is not None:
            fingers = demo.enrol_demo_fingers(self.db, cast("FingerprintSimulator",
                                                            simulated_reader))
            if fingers:
                log.info("demo fingers enrolled on the simulated reader: %s", ", ".join(fingers))
        await self._recover()
        self.service.recovered = True
        self._watch = asyncio.create_task(self._watch_database(), name="database watch")
        status = self.service.status()
        log.info("kiosk ready: %s", "in service" if status.in_service
                 else "out of service: " + "; ".join(status.reasons))
        self.service_changed()

    async def _recover(self, cause: str = RESTART) -> bool:
        """Settle unfinished sales; False (and out of service) while the database refuses."""
        try:
            self.recovered += await recover(self.ledger, self.hardware.card,
                                            self.settings.settle_timeout, cause)
        except NotRecorded as exc:
            self.service.unsettled = f"unfinished sales cannot be settled yet: {exc}"
            return False
        self.service.unsettled = ""
        return True

    async def _watch_database(self) -> None:
        """Notice a database that stopped taking writes, and bring the kiosk back once it does."""
        while True:
            await asyncio.sleep(DATABASE_RETRY_SECONDS)
            try:
                # The probe commits (an fsync): on the scribe, in turn with the sales' writes.
                await self.ledger.scribe(self.db.probe_write)
                if (self.db.writable and self.service.unsettled and self.sales.current is None
                        and await self._recover("a database that refused writes")):
                    log.info("the database takes writes again; unfinished sales settled")
            except Exception:  # the watch must outlive any surprise, or nothing brings it back
                log.exception("checking the database failed")
            if self.service.status() != self._announced:
                self.service_changed()

    def service_changed(self) -> None:
        """Tell the screens what changed (nothing, when nothing did); keep the card reader
        from taking cards while the kiosk can't sell. Any thread may call it (a technician's
        request runs on a worker thread); the work is done on the loop."""
        loop = self._loop
        if loop is not None and not _on(loop):
            loop.call_soon_threadsafe(self.service_changed)
            return
        status = self.service.status()
        if status != self._announced:
            self._announced = status
            self.bus.publish("service", status.as_dict())
        if not self.service.recovered:
            return
        if self._reader_sync is None or self._reader_sync.done():
            self._reader_sync = asyncio.create_task(self._sync_reader())
        else:
            self._resync = True

    async def _sync_reader(self) -> None:
        self._resync = True
        while self._resync:
            self._resync = False
            card = self.hardware.card
            if card is None or not card.health.ok:
                self._reader_enabled = None  # a reader that comes back enables itself: re-apply
                continue
            wanted = self.service.status().in_service
            if wanted == self._reader_enabled or self.sales.current is not None:
                continue
            try:
                async with asyncio.timeout(self.settings.settle_timeout):
                    await card.set_enabled(wanted)
                self._reader_enabled = wanted
                log.info("card reader %s",
                         "enabled" if wanted else "disabled: kiosk out of service")
            except (DeviceError, TimeoutError) as exc:
                log.warning("could not %s the card reader: %s",
                            "enable" if wanted else "disable", exc)

    async def stop(self) -> None:
        for task in (self._reader_sync, self._watch):
            if task is not None:
                task.cancel()
        await self.sales.close()
        await self.hardware.close()
        await asyncio.to_thread(self.ledger.close)
        self.db.dispose()


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop``'s own thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

"""The vending machine as a whole: its ledger, its devices, its service state, its sales.

Built from settings (and, in tests, from given drivers); started by the app's lifespan in the
order the design asks for: database and schema, devices, recovery, then open for sale.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from drivers.base import Device, DeviceKind
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.events import EventBus
from kiosk.hardware import Hardware
from kiosk.ledger import Ledger
from kiosk.recovery import Recovered, recover
from kiosk.sales import Sales
from kiosk.service import Service

log = logging.getLogger(__name__)


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

    async def start(self) -> None:
        """Open everything and settle the past; raises SchemaError for a database it cannot use."""
        self.db.check()
        await self.hardware.open()
        card, timeout = self.hardware.card, self.settings.settle_timeout
        self.recovered = await recover(self.ledger, card, timeout)
        self.service.recovered = True
        status = self.service.status()
        log.info("kiosk ready: %s", "in service" if status.in_service
                 else "out of service: " + "; ".join(status.reasons))
        self.bus.publish("service", status.as_dict())

    async def stop(self) -> None:
        await self.sales.close()
        await self.hardware.close()
        self.db.dispose()

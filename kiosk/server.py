"""The HTTP server: uvicorn, telling systemd when the kiosk is ready and feeding its watchdog."""

from __future__ import annotations

import asyncio
import gc
import socket

import uvicorn
from fastapi import FastAPI

from kiosk import systemd
from kiosk.machine import Machine


class KioskServer(uvicorn.Server):
    """READY=1 once the port listens: the app's lifespan has recovered sales and opened the
    devices before uvicorn binds, so a browser started after us finds a kiosk that sells."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._watchdog: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        machine: Machine = self.app.state.machine
        status = machine.service.status()
        systemd.notify("READY=1", "STATUS=" + ("in service" if status.in_service else
                                               "out of service: " + "; ".join(status.reasons)))
        interval = systemd.watchdog_interval()
        if interval is not None:
            self._watchdog = asyncio.create_task(systemd.keep_watchdog_fed(interval))
        # What exists now (modules, routes, models, the machine) lives as long as the process.
        # Frozen, it is out of the collector's full passes, which otherwise walk all of it
        # every so often, in the middle of whatever request or sale is running (0.1 s here).
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        systemd.notify("STOPPING=1")
        if self._watchdog is not None:
            self._watchdog.cancel()
        await super().shutdown(sockets)

"""``create_app(settings)``: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

import importlib
import mimetypes
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from drivers.base import Device, DeviceKind
from kiosk.api import access, catalog, errors, events, health, sales, sim
from kiosk.api.maintenance import MAINTENANCE_ROUTERS
from kiosk.config import Settings
from kiosk.loop_watch import LoopWatch
from kiosk.machine import Machine

#: The static UIs: web/ beside the packages in a checkout, kiosk/web inside an installed wheel.
WEB = next((path for path in (Path(__file__).parent / "web", Path(__file__).parents[1] / "web")
            if path.is_dir()), Path(__file__).parents[1] / "web")


def create_app(
    settings: Settings, devices: Mapping[DeviceKind, Device] | None = None
) -> FastAPI:
    """The kiosk's app. ``devices`` replaces the configured drivers (tests only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        machine = Machine(settings, devices)
        app.state.machine = machine
        loop_watch = LoopWatch(settings.loop_lag_warning)
        app.state.loop_watch = loop_watch
        # Starlette's static files load these at their first use, which would be on the loop
        # while a customer waits (a tenth of a second on a Pi): load them while starting.
        importlib.import_module("anyio._core._fileio")
        mimetypes.init()
        try:
            await machine.start()
            # Watched from when the kiosk serves: start-up's own waits are not a stall.
            loop_watch.start()
            yield
        finally:
            loop_watch.stop()
            await machine.stop()

    app = FastAPI(
        title="Kiosk",
        summary="Self-service vending kiosk: catalog, sales, devices and maintenance.",
        version="0.1.0",
        lifespan=lifespan,
        # The kiosk exports no OpenTelemetry. Left on, FastAPI asks the global providers on
        # every request whether someone has configured one since.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    errors.install(app)
    access.install(app)
    for router in (health.router, catalog.router, sales.router, events.router,
                   *MAINTENANCE_ROUTERS):
        app.include_router(router)
    app.mount("/maintenance", StaticFiles(directory=WEB / "maintenance", html=True,
                                          check_dir=False), name="maintenance")
    if settings.simulated:
        app.include_router(sim.router)
        app.mount("/dev", StaticFiles(directory=WEB / "dev", html=True, check_dir=False),
                  name="simulator-panel")
    # The touchscreen UI: static files, no build step; mounted last so the API wins.
    app.mount("/", StaticFiles(directory=WEB / "customer", html=True, check_dir=False),
              name="customer")
    return app

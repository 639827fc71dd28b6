"""``create_app(settings)``: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from drivers.base import Device, DeviceKind
from kiosk.api import catalog, errors, events, health, sales
from kiosk.config import Settings
from kiosk.machine import Machine


def create_app(
    settings: Settings, devices: Mapping[DeviceKind, Device] | None = None
) -> FastAPI:
    """The kiosk's app. ``devices`` replaces the configured drivers (tests only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        machine = Machine(settings, devices)
        app.state.machine = machine
        try:
            await machine.start()
            yield
        finally:
            await machine.stop()

    app = FastAPI(
        title="Kiosk",
        summary="Self-service vending kiosk: catalog, sales, devices and maintenance.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    for router in (health.router, catalog.router, sales.router, events.router):
        app.include_router(router)
    return app

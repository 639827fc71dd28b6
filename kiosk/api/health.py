"""``/healthz``: the process is alive. ``/readyz``: the kiosk can sell, or why it cannot."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kiosk.api import access
from kiosk.api.deps import MachineDep
from kiosk.api.errors import error_body
from kiosk.loop_watch import LoopWatch

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", responses={503: {"description": "The kiosk cannot sell; says why"}})
async def readyz(machine: MachineDep, request: Request) -> JSONResponse:
    """Ready or not, and why; devices, database, loop lag only to loopback, trusted networks."""
    status = machine.service.status()
    body: dict[str, Any] = {"service": status.as_dict()}
    host = request.client.host if request.client else None
    if access.address_allowed(host, machine.settings.trusted_networks):
        body["devices"] = machine.hardware.describe()
        body["database"] = {"path": str(machine.db.path), "writable": machine.db.writable}
        loop_watch: LoopWatch = request.app.state.loop_watch
        body["event_loop"] = loop_watch.figures().as_dict()
    if status.in_service:
        return JSONResponse({"ready": True, **body})
    message = "the kiosk cannot sell: " + "; ".join(status.reasons)
    return JSONResponse({**error_body("not_ready", message), **body}, status_code=503)

"""``GET /api/events``: the live event stream (server-sent events) the screens follow.

A client that connects (or reconnects) first gets the current state: service, devices and the
sale in progress; then every change as it happens. Comments keep idle connections alive
through proxies and let the server notice a closed tab.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from kiosk.api import access
from kiosk.api.deps import MachineDep
from kiosk.events import Event
from kiosk.machine import Machine
from kiosk.sale_view import sale_view

router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Depends(access.customer)])

KEEPALIVE_SECONDS = 15.0


def frame(topic: str, data: dict[str, Any], event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {topic}", f"data: {json.dumps(data, separators=(',', ':'))}", "", ""]
    return "\n".join(lines)


def snapshot(machine: Machine) -> list[str]:
    frames = [
        frame("service", machine.service.status().as_dict()),
        frame("devices", machine.hardware.describe()),
    ]
    current = machine.sales.current
    if current is not None:
        frames.append(frame("sale", sale_view(machine.ledger.get(current.id))))
    return frames


async def stream(request: Request, machine: Machine) -> AsyncIterator[str]:
    async with machine.bus.subscribe() as queue:
        for first in snapshot(machine):
            yield first
        while not await request.is_disconnected():
            try:
                event: Event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            yield frame(event.topic, event.data, event.id)
            if event.topic == "device":  # a device's health may change what the kiosk can do
                yield frame("service", machine.service.status().as_dict())


@router.get("", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, machine: MachineDep) -> StreamingResponse:
    return StreamingResponse(
        stream(request, machine),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

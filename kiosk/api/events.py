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
        # The engine's copy is the last state it committed: no read of the disk on the loop.
        frames.append(frame("sale", sale_view(current)))
    return frames


async def stream(request: Request, machine: Machine) -> AsyncIterator[str]:
    async with machine.bus.subscribe() as queue:
        yield "".join(snapshot(machine))
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    event: Event = await queue.get()
            except TimeoutError:
                # Starlette stops the stream when the client's disconnect arrives; asking
                # here as well costs nothing once in a while and covers servers that don't.
                if await request.is_disconnected():
                    return
                yield ": keepalive\n\n"
                continue
            # The screen can wait a moment; a sale's next device command cannot. Whatever
            # woke up with this event (the sale's drive, usually) runs first, and what it
            # publishes meanwhile goes out in the same write.
            await asyncio.sleep(0)
            # What a device's health changes in what the kiosk can do comes as its own
            # ``service`` event, published by the machine when the answer changes.
            frames = [frame(event.topic, event.data, event.id)]
            while not queue.empty():  # what piled up meanwhile goes out in one write
                event = queue.get_nowait()
                frames.append(frame(event.topic, event.data, event.id))
            yield "".join(frames)


@router.get("", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, machine: MachineDep) -> StreamingResponse:
    return StreamingResponse(
        stream(request, machine),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

"""In-process publish/subscribe: what happens in the kiosk, for the live event stream.

Publishing never waits: a subscriber that stops reading (a tab left open on a laptop) loses
its oldest events instead of slowing the sale down. Any thread may publish (a technician's
request runs on a worker thread): the event is then handed to the subscribers' loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``topic`` is ``sale``, ``device``, ``catalog`` or ``service``."""

    topic: str
    data: dict[str, Any]
    id: int = field(default=0)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def publish(self, topic: str, data: dict[str, Any]) -> Event:
        event = Event(topic, data, next(self._ids))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # A worker thread: asyncio's queues belong to their loop, so deliver there.
            if self._loop is not None and self._subscribers:
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody listens
                    self._loop.call_soon_threadsafe(self._deliver, event)
            return event
        self._deliver(event)
        return event

    def _deliver(self, event: Event) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._loop = asyncio.get_running_loop()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

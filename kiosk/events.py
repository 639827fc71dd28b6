"""In-process publish/subscribe: what happens in the kiosk, for the live event stream.

Publishing never waits: a subscriber that stops reading (a tab left open on a laptop) loses
its oldest events instead of slowing the sale down.
"""

from __future__ import annotations

import asyncio
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

    def publish(self, topic: str, data: dict[str, Any]) -> Event:
        event = Event(topic, data, next(self._ids))
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        return event

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

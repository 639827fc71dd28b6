"""What the touchscreen does during a sale, with as little of its own cost as a client can have.

The card-sale benchmark measures the kiosk's share of a sale, so its client must add as little
as it can: a general HTTP client (httpx) spends about as much per request as the kiosk's own
route does, on the same two cores. This one writes HTTP/1.1 by hand on two keep-alive
connections, one for requests and one for ``GET /api/events``, whose chunked frames it splits
as they arrive and stamps with ``perf_counter()`` the moment each is complete.

It understands only what the kiosk answers (a ``Content-Length`` body, or a chunked stream) and
fails loudly on anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class ClientError(RuntimeError):
    """The kiosk answered something this client does not understand, or closed the line."""


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers of one response."""
    status_line = await reader.readline()
    if not status_line:
        raise ClientError("the kiosk closed the connection")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ClientError(f"not an HTTP response: {status_line!r}")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


@dataclass
class Line:
    """One keep-alive connection for requests, answered one at a time."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str

    async def request(self, method: str, path: str,
                      body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Length: {len(payload)}\r\n"
                + ("Content-Type: application/json\r\n" if body is not None else "") + "\r\n")
        # One write: the request arrives whole, as a browser's small POST does.
        self.writer.write(head.encode() + payload)
        status, headers = await _head(self.reader)
        if "content-length" not in headers:
            raise ClientError(f"{method} {path}: an answer without Content-Length: {headers}")
        answer = await self.reader.readexactly(int(headers["content-length"]))
        return status, json.loads(answer) if answer else None


@dataclass
class EventFollower:
    """The touchscreen's view: every sale event, with the moment it arrived."""

    seen: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    #: Why the stream stopped, if it did: a waiting sale is told at once.
    failure: BaseException | None = None

    async def follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     host: str) -> None:
        try:
            await self._follow(reader, writer, host)
        except (Exception, asyncio.CancelledError) as exc:
            self.failure = exc
            self.changed.set()
            raise

    async def _follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      host: str) -> None:
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        status, headers = await _head(reader)
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise ClientError(f"/api/events answered {status} {headers}")
        pending = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                raise ClientError("the kiosk ended the event stream")
            pending += chunk[:-2]
            *frames, pending = pending.split(b"\n\n")
            for frame in frames:
                self._take(frame, time.perf_counter())

    def _take(self, frame: bytes, at: float) -> None:
        topic, data = "", ""
        for line in frame.decode().split("\n"):
            if line.startswith("event: "):
                topic = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if topic == "service":
            self.connected.set()
        elif topic == "sale":
            sale = json.loads(data)
            self.seen.setdefault(sale["id"], []).append((sale["state"], at))
            if sale["terminal"]:
                self.changed.set()

    async def until_ended(self, sale_id: str, terminal: str,
                          timeout: float = 30.0) -> list[tuple[str, float]]:
        async with asyncio.timeout(timeout):
            while not any(state == terminal for state, _ in self.seen.get(sale_id, ())):
                if self.failure is not None:
                    raise ClientError(f"the event stream stopped: {self.failure!r}")
                self.changed.clear()
                await self.changed.wait()
        return self.seen.pop(sale_id)


@asynccontextmanager
async def touchscreen(url: str) -> AsyncIterator[tuple[Line, EventFollower]]:
    """A request line and an event follower on the kiosk at ``url``, once the stream is on."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    events_reader, events_writer = await asyncio.open_connection(host, port)
    follower = EventFollower()
    task = asyncio.create_task(follower.follow(events_reader, events_writer, address.netloc))
    try:
        async with asyncio.timeout(10):
            await follower.connected.wait()
        yield Line(reader, writer, address.netloc), follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for each in (writer, events_writer):
            each.close()
            with contextlib.suppress(OSError):
                await each.wait_closed()

"""A serial connection that keeps itself open: reconnects with exponential backoff.

Both serial drivers (the card interface and the fingerprint module) need the same things from
a port: open it, hand every received chunk to a parser, run a handshake after each (re)connect,
notice an unplug, and try again later without hammering a missing device. This module does
that once; the drivers keep only their protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import serial_asyncio_fast

from drivers.base import DeviceError, DeviceUnavailable

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s ... up to ``maximum``."""

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 10.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        # Jitter keeps two devices that vanished together from retrying in lockstep.
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class SerialLink:
    """One serial port, kept open by a background task.

    ``on_data`` gets every chunk read. ``on_connect`` runs after each successful open (the
    handshake); if it raises :class:`DeviceError` the port is closed and retried later.
    ``on_state`` hears ``(connected, reason)`` on every change so the driver can set health.
    """

    def __init__(
        self,
        device: str,
        port: str,
        baudrate: int,
        on_data: Callable[[bytes], None],
        on_connect: Callable[[], Awaitable[None]],
        on_state: Callable[[bool, str], None],
        backoff: Backoff | None = None,
    ) -> None:
        self.device = device
        self.port = port
        self.baudrate = baudrate
        self._on_data = on_data
        self._on_connect = on_connect
        self._on_state = on_state
        self.backoff = backoff or Backoff()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Event = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._drop_reason = ""

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def start(self) -> None:
        """Start the keep-open task; return after the first attempt, connected or not."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"serial {self.port}")
        await self._first_attempt.wait()

    async def write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise DeviceUnavailable(self.device, f"{self.port} is not connected")
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, ConnectionError) as exc:
            self.drop(f"write to {self.port} failed: {exc}")
            raise DeviceUnavailable(self.device, f"write to {self.port} failed: {exc}") from None

    def drop(self, reason: str) -> None:
        """Close the port (after a fatal protocol state, say); it is reopened after a backoff."""
        if self._writer is not None:
            log.warning("%s: dropping %s: %s", self.device, self.port, reason)
            self._drop_reason = reason
            self._lost.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close_writer()

    async def _run(self) -> None:
        while True:
            reason = await self._session()
            self._close_writer()
            self._on_state(False, reason)
            self._first_attempt.set()
            await asyncio.sleep(self.backoff.next_delay())

    async def _session(self) -> str:
        """One open-handshake-read cycle; returns why it ended."""
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate
            )
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            return f"cannot open {self.port}: {exc}"
        self._writer = writer
        self._lost.clear()
        pump = asyncio.create_task(self._pump(reader), name=f"serial read {self.port}")
        lost = asyncio.create_task(self._lost.wait())
        try:
            try:
                await self._on_connect()
            except DeviceError as exc:
                return f"handshake on {self.port} failed: {exc.message}"
            self.backoff.reset()
            self._on_state(True, f"connected on {self.port}")
            self._first_attempt.set()
            await asyncio.wait({pump, lost}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                return pump.result()
            return f"{self.port} closed: {self._drop_reason or 'protocol failure'}"
        finally:
            for child in (pump, lost):
                child.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child
            _reraise_if_cancelled()

    async def _pump(self, reader: asyncio.StreamReader) -> str:
        while True:
            try:
                chunk = await reader.read(4096)
            except (OSError, ConnectionError) as exc:
                return f"{self.port} lost: {exc}"
            if not chunk:
                return f"{self.port} closed (unplugged?)"
            self._on_data(chunk)

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()


def _reraise_if_cancelled() -> None:
    """Re-raise a cancellation of this task that a suppress() around a child task swallowed.

    Awaiting a cancelled child inside ``suppress(CancelledError)`` also swallows a cancel
    aimed at *us* in that moment; without this, ``close()`` could wait forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

"""A serial port for a simulated device: a pty served from a background thread.

A device simulator gives :class:`PtyPort` a function that turns received bytes into the bytes
to send back; the port does the rest. It runs its own thread (``select()`` on the pty), so it
works beside any event loop and in plain synchronous tests, and any client opens
:attr:`PtyPort.port` exactly as it would open ``/dev/ttyUSB0``.

Unplug and replug: a pty's path dies with it and a new pty gets a new path, so
:attr:`PtyPort.port` is a stable symlink, in a private temp directory, to the current pty.
:meth:`PtyPort.unplug` closes the pty and removes the symlink (the client's next read fails
and reopening finds no device, as with a pulled USB cable); :meth:`PtyPort.replug` makes a new
pty and points the symlink at it, so a client that keeps reopening the path finds it again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

Answer = Callable[[bytes], bytes]


class PtyPort:
    """A pty whose far end is ``answer``: bytes in, bytes out, called on the port's thread.

    ``answer`` and ``on_plug`` (called at every plug-in: the device powers up) run holding
    ``lock``, so the simulator can share that lock to guard its own state.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        name: str = "ttySIM",
        lock: threading.RLock | None = None,
        on_plug: Callable[[], None] = lambda: None,
    ) -> None:
        self._answer = answer
        self._on_plug = on_plug
        self.lock = lock or threading.RLock()
        #: Seconds every answer is held back (a slow device); 0 answers at once.
        self.answer_delay = 0.0
        self._dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self._port = self._dir / name
        self._controller: int | None = None
        self._follower: int | None = None
        self._tty: str | None = None
        self._outbox = bytearray()
        self._delayed: list[tuple[float, bytes]] = []
        self._actions: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._stopping = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._plug()
        self._thread = threading.Thread(target=self._serve, name=f"pty {self._port}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> str:
        """The stable device path to open (a symlink to the current pty)."""
        return str(self._port)

    @property
    def tty(self) -> str | None:
        """The current pty behind :attr:`port`; None while unplugged."""
        return self._tty

    @property
    def plugged(self) -> bool:
        return self._controller is not None

    def unplug(self) -> None:
        """Close the pty and remove :attr:`port`."""
        self._in_server(self._unplug)

    def replug(self) -> None:
        """A new pty behind :attr:`port`; ``on_plug`` runs (the device powers up)."""
        self._in_server(self._plug)

    def close(self) -> None:
        """Stop the thread and remove the pty and its directory. Idempotent."""
        with self.lock:
            if self._closed:
                return
            self._closed = self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self._dir.rmdir()

    # --- the port's thread --------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self.lock:
                if self._stopping:
                    return
                fd = self._controller
                self._release_delayed()
                outgoing = [fd] if fd is not None and self._outbox else []
                wait = max(0.0, self._delayed[0][0] - time.monotonic()) if self._delayed else None
            watched = [self._wake_r] if fd is None else [self._wake_r, fd]
            try:
                readable, writable, _ = select.select(watched, outgoing, [], wait)
            except OSError:
                continue  # cannot happen while fds change only here, but never die of it
            if self._wake_r in readable:
                os.read(self._wake_r, 1024)
                self._run_actions()
            if fd is not None and fd == self._controller:
                if fd in readable:
                    self._read_from(fd)
                if writable or self._outbox:
                    self._write_to(fd)

    def _read_from(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        with self.lock:
            answer = self._answer(data)
            if not answer:
                return
            if self.answer_delay > 0:
                self._delayed.append((time.monotonic() + self.answer_delay, answer))
            else:
                self._outbox += answer

    def _release_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            self._outbox += self._delayed.pop(0)[1]

    def _write_to(self, fd: int) -> None:
        with self.lock:
            if not self._outbox:
                return
            try:
                written = os.write(fd, self._outbox)
            except BlockingIOError:
                return  # the client is slow to read: select() says when to go on
            except OSError:
                self._outbox.clear()
                return
            del self._outbox[:written]

    def _in_server(self, action: Callable[[], None]) -> None:
        # File descriptors change only on the port's thread, never under its select().
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            action()
            return
        done = threading.Event()
        self._actions.put((action, done))
        os.write(self._wake_w, b"!")
        if not done.wait(timeout=5):
            raise RuntimeError(f"the simulated port {self._port} did not respond")

    def _run_actions(self) -> None:
        while True:
            try:
                action, done = self._actions.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            finally:
                done.set()

    def _plug(self) -> None:
        with self.lock:
            if self._controller is not None or self._closed:
                return
            controller, follower = os.openpty()
            # The simulator keeps the follower open too: without it, reading the controller
            # fails with EIO whenever no client has the port open.
            tty.setraw(follower)
            os.set_blocking(controller, False)
            self._controller, self._follower = controller, follower
            self._tty = os.ttyname(follower)
            self._outbox.clear()
            self._on_plug()
            staging = self._dir / f"{self._port.name}.new"
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            staging.symlink_to(self._tty)
            staging.replace(self._port)  # atomic: the path never dangles mid-swap

    def _unplug(self) -> None:
        with self.lock:
            with contextlib.suppress(FileNotFoundError):
                self._port.unlink()
            for fd in (self._controller, self._follower):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._controller = self._follower = self._tty = None
            self._outbox.clear()
            self._delayed.clear()

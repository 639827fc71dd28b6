"""A serial port for a simulated device: a pty served from a background thread.

A device simulator gives :class:`PtyPort` a function that turns received bytes into the bytes
to send back; the port does the rest. It runs its own thread (``select()`` on the pty), so it
works beside any event loop and in plain synchronous tests, and any client opens
:attr:`PtyPort.port` exactly as it would open ``/dev/ttyUSB0``. A device that also speaks
unasked writes with :meth:`PtyPort.send` and schedules its own later work with
:meth:`PtyPort.after`; a line-protocol device wraps its handler in a :class:`LineFeed`.

Unplug and replug: a pty's path dies with it and a new pty gets a new path, so
:attr:`PtyPort.port` is a stable symlink, in a private temp directory, to the current pty.
:meth:`PtyPort.unplug` closes the pty and removes the symlink (the client's next read fails
and reopening finds no device, as with a pulled USB cable); :meth:`PtyPort.replug` makes a new
pty and points the symlink at it, so a client that keeps reopening the path finds it again.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import select
import shutil
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Answer = Callable[[bytes], bytes]

#: How long before a held answer is due the port's thread stops sleeping and watches the
#: clock instead. A sleeping thread wakes late (timer slack, the scheduler: a tenth of a
#: millisecond typically, more on a busy machine), and a paced line must not add that
#: lateness to the wire time it stands for.
SPIN = 0.0005


class LineFeed:
    """An :data:`Answer` for an ASCII line protocol: each complete line goes to ``on_line``.

    ``on_line`` gets the line without its ``\\n`` or ``\\r\\n`` and answers, if at all, with
    :meth:`PtyPort.send`. Of an unfinished line only the last ``limit`` bytes are kept, so a
    client that never ends a line cannot make it grow without end.
    """

    def __init__(self, on_line: Callable[[str], None], *, limit: int = 1024) -> None:
        self._on_line = on_line
        self._limit = limit
        self._pending = bytearray()

    def __call__(self, data: bytes) -> bytes:
        *complete, rest = (self._pending + data).split(b"\n")
        self._pending = bytearray(rest[-self._limit :])
        for raw in complete:
            self._on_line(raw.rstrip(b"\r").decode("ascii", "replace"))
        return b""

    def clear(self) -> None:
        """Forget an unfinished line (the device lost power)."""
        self._pending.clear()


class PtyPort:
    """A pty whose far end is ``answer``: bytes in, bytes out, called on the port's thread.

    ``answer``, ``on_plug`` (called at every plug-in: the device powers up), ``on_unplug``
    (called before the pty goes: the device loses power) and the work given to :meth:`after`
    run holding ``lock``, so the simulator can share that lock to guard its own state. Never
    call :meth:`unplug`, :meth:`replug` or :meth:`close` holding it: they wait for the thread.

    The port's private directory is made in ``link_dir`` (default: the system's temporary
    directory), named ``prefix`` and a random tail. ``drop_unread``: bytes the client leaves
    unread once the pty's buffer is full are lost, with a warning, as on a UART without flow
    control; otherwise they wait until the client reads.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        name: str = "ttySIM",
        lock: threading.RLock | None = None,
        on_plug: Callable[[], None] = lambda: None,
        on_unplug: Callable[[], None] = lambda: None,
        link_dir: Path | None = None,
        prefix: str | None = None,
        drop_unread: bool = False,
    ) -> None:
        self._answer = answer
        self._on_plug = on_plug
        self._on_unplug = on_unplug
        self._drop_unread = drop_unread
        self.lock = lock or threading.RLock()
        #: Seconds every answer is held back (a slow device); 0 answers at once.
        self.answer_delay = 0.0
        #: Emulate a UART at this baud (10 bits a byte): each answer is sent when the
        #: command's bytes and its own would have crossed the wire, counted from the moment
        #: the command was read off the pty. None: as fast as a pty.
        self.wire_baud: int | None = None
        #: Bytes received from and sent to the client, for benchmarks against the wire time.
        self.bytes_in = 0
        self.bytes_out = 0
        self._dir = Path(tempfile.mkdtemp(prefix=prefix or f"{name}-", dir=link_dir))
        self._port = self._dir / name
        self._controller: int | None = None
        self._follower: int | None = None
        self._tty: str | None = None
        self._outbox = bytearray()
        #: Answers held back (answer_delay, wire_baud), oldest first, each with the
        #: time.perf_counter() it is due at; they leave in order, as on a serial line.
        self._delayed: list[tuple[float, bytes]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # timers due at the same moment run in order given
        self._actions: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._stopping = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._serve, name=f"pty {self._port}", daemon=True)
        self._plug()
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

    def send(self, data: bytes) -> None:
        """Write ``data`` to the client now, after anything still queued; nothing if unplugged."""
        with self.lock:
            if self._controller is None:
                return
            self._outbox += data
            self._flush()
            if self._outbox:
                self._wake()  # the rest goes when select() says the client reads again

    def after(self, delay: float, work: Callable[[], None]) -> None:
        """Run ``work`` on the port's thread, holding :attr:`lock`, ``delay`` s from now."""
        with self.lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), work))
            self._wake()

    def catch_up(self) -> None:
        """Answer what the client has already sent, now.

        A simulator calls this before it reports its state or acts, so that a line the client
        wrote just before has been taken, whether or not the port's thread has got to it yet.
        """
        with self.lock:
            self._take_input()
            self._flush()
            if self._outbox or self._delayed:
                self._wake()  # the thread may be asleep with nothing due: it must look again

    def unplug(self) -> None:
        """Close the pty and remove :attr:`port`; ``on_unplug`` runs first."""
        self._in_server(self._unplug)

    def replug(self) -> None:
        """A new pty behind :attr:`port`; ``on_plug`` runs (the device powers up)."""
        self._in_server(self._plug)

    def close(self) -> None:
        """Stop the thread, unplug, and remove the pty and its directory. Idempotent."""
        with self.lock:
            if self._closed:
                return
            self._closed = self._stopping = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- the port's thread --------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:  # a bug in one handler must not silence the device
                log.exception("simulated device on %s failed", self._port)

    def _step(self) -> bool:
        """One turn: due work, then wait for the client or a wake-up. True when stopping."""
        with self.lock:
            if self._stopping:
                return True
            self._run_due()
            fd = self._controller
            outgoing = [fd] if fd is not None and self._outbox else []
            wait = self._until_due()
            answer_due = self._delayed[0][0] if self._delayed else None
        if answer_due is not None and answer_due - time.perf_counter() <= SPIN:
            # Too close to sleep on: watch the clock (without the lock, so the simulator's
            # other users are not held up); the next turn sends the answer.
            _wait_until(answer_due)
            return False
        watched = [self._wake_r] if fd is None else [self._wake_r, fd]
        try:
            readable, writable, _ = select.select(watched, outgoing, [], wait)
        except OSError:
            return False  # cannot happen while fds change only here, but never die of it
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 1024)
            self._run_actions()
        if fd is not None and (fd in readable or writable or self._outbox):
            with self.lock:
                if fd == self._controller:
                    self._take_input()
                    self._flush()
        return False

    def _take_input(self) -> None:
        """Answer all the client has sent so far; called holding :attr:`lock`."""
        # Read and answer under one lock, so input is answered in order whichever thread reads.
        while self._controller is not None:
            # Every byte read now was on the pty by this moment: pacing counts from here, so
            # the time spent answering is inside the wire time, not added after it.
            arrived = time.perf_counter()
            try:
                data = os.read(self._controller, 4096)
            except OSError:  # mostly BlockingIOError: nothing more to read
                return
            if not data:
                return
            try:
                answer = self._answer(data)
            except Exception:  # a bug in the device must not silence the port
                log.exception("simulated device on %s failed on its input", self._port)
                continue
            self.bytes_in += len(data)
            if not answer:
                continue
            self.bytes_out += len(answer)
            delay = self.answer_delay
            if self.wire_baud:
                delay += (len(data) + len(answer)) * 10 / self.wire_baud
            if delay > 0:
                self._delayed.append((arrived + delay, answer))
            else:
                self._outbox += answer

    def _run_due(self) -> None:
        released = False
        while self._delayed and self._delayed[0][0] <= time.perf_counter():
            self._outbox += self._delayed.pop(0)[1]
            released = True
        if released:
            self._flush()  # now, not after another turn through select()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            work = heapq.heappop(self._timers)[2]
            try:
                work()
            except Exception:
                log.exception("simulated device on %s: scheduled work failed", self._port)

    def _until_due(self) -> float | None:
        """Seconds to sleep at most: until the next timer, or until an answer is nearly due."""
        waits = []
        if self._delayed:
            waits.append(self._delayed[0][0] - SPIN - time.perf_counter())
        if self._timers:
            waits.append(self._timers[0][0] - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def _flush(self) -> None:
        """Write the outbox as far as the client takes it; called holding :attr:`lock`."""
        while self._outbox and self._controller is not None:
            try:
                written = os.write(self._controller, self._outbox)
            except BlockingIOError:
                if self._drop_unread:
                    log.warning("%s: the client is not reading; dropped %d bytes",
                                self._port, len(self._outbox))
                    self._outbox.clear()
                return  # otherwise select() says when the client reads again
            except OSError as exc:
                log.warning("%s: write failed, %d bytes lost: %s", self._port, len(self._outbox),
                            exc)
                self._outbox.clear()
                return
            del self._outbox[:written]

    def _wake(self) -> None:
        """Make the thread look again at its timers and outbox; called holding :attr:`lock`."""
        # On the thread itself there is no need: it looks again before it waits.
        if self._closed or threading.current_thread() is self._thread:
            return
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _in_server(self, action: Callable[[], None]) -> None:
        # File descriptors change only on the port's thread, never under its select().
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            action()
            return
        done = threading.Event()
        self._actions.put((action, done))
        with contextlib.suppress(BlockingIOError):
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
            if self._controller is None:
                return
            try:
                self._on_unplug()
            finally:  # whatever the device makes of it, the cable is out
                with contextlib.suppress(FileNotFoundError):
                    self._port.unlink()
                for fd in (self._controller, self._follower):
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                self._controller = self._follower = self._tty = None
                self._outbox.clear()
                self._delayed.clear()


def _wait_until(moment: float) -> None:
    """Return at ``time.perf_counter()`` = ``moment``, give or take a microsecond or two."""
    while time.perf_counter() < moment:
        # A select() that waits for nothing: it lets the GIL go, so the other threads run
        # meanwhile, and returns at once (time.sleep(0) would sleep on for timer slack).
        select.select([], [], [], 0)

"""Talking to a Qibixx MDB interface: lines in and out, waits with deadlines, start-up, resets.

:class:`QibixxInterface` is the lower half of the card driver. It owns the serial link, turns
received bytes into messages, hands each to the operation waiting for it (or handles it as
unsolicited news), introduces itself after every connect and re-initialises the reader after
a reset. The sale itself (authorize, capture, void) is :mod:`drivers.card.qibixx`'s job.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from drivers.base import (
    CardReader,
    DeviceError,
    DeviceProtocolError,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    HealthState,
)
from drivers.card import lines
from drivers.card.lines import (
    InterfaceError,
    InterfaceMessage,
    ReaderIdle,
    ReaderInit,
    ReaderReset,
    Unrecognised,
    VendApproved,
    VendDenied,
    VendPending,
    Version,
)
from drivers.card.timing import ReaderTiming
from drivers.serial_link import SerialLink

log = logging.getLogger("drivers.card.qibixx")


@dataclass(frozen=True)
class HostCancel:
    """cancel(), set_enabled(False) or close() asked a waiting authorize() to give up."""


@dataclass(frozen=True)
class LinkLost:
    reason: str


Incoming: TypeAlias = InterfaceMessage | HostCancel | LinkLost


@dataclass
class Waiter:
    """Lines an operation is waiting for, queued in arrival order (one chunk may hold several)."""

    accepts: tuple[type, ...]
    inbox: asyncio.Queue[Incoming] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class Session:
    """The approved session open on the reader: the only one capture() or void() will end."""

    reference: str
    amount_cents: int
    item: int


END_ANSWERS = (ReaderIdle, InterfaceError, ReaderReset)

#: How many ended sessions the driver remembers (see ``QibixxInterface._ended``).
ENDINGS_KEPT = 16


class Ending(StrEnum):
    """How a session ended at the reader."""

    CAPTURED = "captured"
    VOIDED = "voided"
    #: The reader reset with the session open: it ended without a charge.
    RESET = "reset"


def new_reference(origin: str) -> str:
    """An opaque session reference; hex in groups of four, so never a card-number-like digit run.

    ``origin`` names the driver instance that opened the session, so that after a restart the
    driver can tell a session of its own from one a previous run left on the reader.
    """
    raw = uuid.uuid4().hex[:12]
    return f"qbx-{origin}-" + "-".join(raw[i : i + 4] for i in range(0, 12, 4))


class QibixxInterface(CardReader):
    """The conversation with the interface; subclasses add the card sale on top."""

    def __init__(self, port: str, baudrate: int, timing: ReaderTiming, description: str) -> None:
        super().__init__(description)
        self.port = port
        self.baudrate = baudrate
        self.timing = timing
        self._who = f"card reader on {port}"
        self._link: SerialLink | None = None
        self._splitter = lines.LineSplitter()
        self._lock = asyncio.Lock()  # one conversation with the interface at a time
        self._waiter: Waiter | None = None
        self._session: Session | None = None
        self._origin = uuid.uuid4().hex[:4]
        #: Reader resets seen since this driver started: each one ended any open session unpaid.
        self._resets_seen = 0
        #: How our latest sessions ended (captured, voided, reset), so that asking again to end
        #: one (a retry after the ledger failed to record the first answer) gets the same answer.
        #: A few are plenty: one sale at a time.
        self._ended: OrderedDict[str, Ending] = OrderedDict()
        self._requesting = False
        #: A line was garbled while the open vend request waited: it may have been the result.
        self._result_garbled = False
        self._stray_approval: int | None = None
        self._quiet_until = 0.0
        self._handshaking = False
        self._ready = False  # introduced, reader initialised, not re-initialising after a reset
        self._initialised = False
        self._enabled = False
        self._want_enabled = True
        self._closed = False
        self._firmware = ""
        self._always_idle: bool | None = None
        self._protocol_errors = 0
        self._recovery: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- start-up after every connect ---------------------------------------------------------

    async def _handshake(self) -> None:
        try:
            async with self._lock:
                self._handshaking = True
                try:
                    await self._introduce()
                finally:
                    self._handshaking = False
        except DeviceError:
            raise
        except Exception as exc:  # a bug here must not end the reconnect loop
            log.exception("%s: handshake failed unexpectedly", self._who)
            raise DeviceProtocolError(self._who, f"handshake failed: {exc!r}") from exc

    async def _introduce(self) -> None:
        self._splitter.reset()
        self._ready = self._initialised = self._enabled = False
        await self._exchange(lines.ASK_VERSION, (Version,), "a version line v,...")
        init = (ReaderInit, InterfaceError)
        expected = "d,STATUS,RESET then d,STATUS,INIT,1"
        startup = self.timing.startup_timeout
        reply = await self._exchange(lines.MASTER_SELECTION_FIRST, init, expected, startup)
        if isinstance(reply, InterfaceError):
            # Still in master mode from before (the kiosk restarted, the interface did not):
            # off and on again, which also resets the reader and so ends any session left open.
            await self._send(lines.MASTER_OFF)
            reply = await self._exchange(lines.MASTER_SELECTION_FIRST, init, expected, startup)
            if isinstance(reply, InterfaceError):
                raise DeviceRejected(
                    self._who, f"the interface refused {lines.MASTER_SELECTION_FIRST} twice: "
                    f"d,ERR,{reply.detail} (expected d,STATUS,INIT,1)",
                )
        if isinstance(reply, ReaderInit) and not reply.always_idle:
            raise DeviceRejected(
                self._who, "the reader is not always-idle capable (d,STATUS,INIT,0); "
                "selection-first sales need one that is",
            )
        if not await self._apply_enabled():
            raise DeviceProtocolError(self._who, "the reader reset again while being enabled")
        self._ready = True

    async def _apply_enabled(self) -> bool:
        """Send the wished reader state; False if the reader reset instead of answering."""
        if not self._want_enabled:
            await self._send(lines.READER_OFF)
            self._enabled = False
            return True
        reply = await self._exchange(lines.READER_ON, END_ANSWERS, "d,STATUS,IDLE")
        if isinstance(reply, InterfaceError):
            raise DeviceRejected(
                self._who, f"the interface refused {lines.READER_ON}: d,ERR,{reply.detail} "
                "(expected d,STATUS,IDLE)",
            )
        return isinstance(reply, ReaderIdle)

    def _start_recovery(self, reason: str) -> None:
        if self._handshaking or self._closed or not self._connected:
            return
        self._ready = False
        self._set_health(HealthState.DEGRADED, reason, self._detail())
        self._emit("reader_reset")
        if self._recovery is None or self._recovery.done():
            self._recovery = self._spawn(self._recover())

    async def _recover(self) -> None:
        """Bring the reader back after a reset: wait for its set-up, then enable it again."""
        async with self._lock:
            if self._closed or not self._connected:
                return
            try:
                for _ in range(3):
                    if not self._initialised:
                        startup = self.timing.startup_timeout
                        await self._wait_for((ReaderInit,), "d,STATUS,INIT after a reset", startup)
                    if await self._apply_enabled():
                        break
                else:
                    raise DeviceProtocolError(self._who, "the reader kept resetting")
            except (DeviceTimeout, DeviceUnavailable):
                return  # the link was dropped or lost: the reconnect's handshake starts afresh
            except DeviceError as exc:
                if self._link is not None:
                    self._link.drop(f"the reader did not come back after a reset: {exc.message}")
                return
            self._ready = True
            self._set_health(HealthState.OK, self._ready_reason(), self._detail())

    # --- lines in -----------------------------------------------------------------------------

    def _on_data(self, chunk: bytes) -> None:
        try:
            overlong = self._splitter.overlong
            for line in self._splitter.feed(chunk):
                self._on_line(line)
            if self._splitter.overlong != overlong:
                self._protocol_error(
                    f"discarded a line longer than {self._splitter.max_length} bytes"
                )
        except Exception:  # whatever the bytes, the read loop must go on
            log.exception("%s: failed to handle received bytes", self._who)

    def _on_line(self, line: str) -> None:
        shown = lines.loggable(line)
        log.debug("%s <- %s", self.port, shown)
        message = lines.parse_line(line)
        if isinstance(message, Unrecognised):
            self._protocol_error(f"unrecognised line {shown!r}: {message.why}")
            return
        self._track(message)
        waiter = self._waiter
        if waiter is not None and isinstance(message, waiter.accepts):
            waiter.inbox.put_nowait(message)
        else:
            self._unsolicited(message, shown)

    def _track(self, message: InterfaceMessage) -> None:
        """Keep the reader's state, whoever is waiting for the line."""
        match message:
            case Version(text=text):
                self._firmware = text
            case ReaderReset():
                self._initialised = self._enabled = False
                self._resets_seen += 1
                lost, self._session = self._session, None
                if lost is not None:
                    self._record_end(lost, Ending.RESET)
                    log.warning(
                        "%s: reader reset with session %s (%s) open: it ends uncharged",
                        self._who, lost.reference, lines.format_amount(lost.amount_cents),
                    )
                    self._emit("session_lost", reference=lost.reference,
                               amount_cents=lost.amount_cents)
                self._start_recovery("reader reset; re-initialising")
            case ReaderInit(always_idle=always_idle):
                self._always_idle = always_idle
                self._initialised, self._enabled = True, False
                if self._ready:  # set up again without a reset line: it is disabled now
                    self._start_recovery("reader re-initialised itself; enabling it again")
            case ReaderIdle():
                self._enabled = True
            case _:
                pass

    def _record_end(self, session: Session, ending: Ending) -> None:
        self._ended[session.reference] = ending
        while len(self._ended) > ENDINGS_KEPT:
            self._ended.popitem(last=False)

    def _how_ended(self, reference: str | None) -> Ending | None:
        """How a session that is no longer open ended, when this driver can be sure; else None.

        A session of a previous run (the kiosk restarted) ended with the reset this driver
        does on every connect: a reset reader charges no session it was not told to complete.
        """
        if reference is None or (self._session is not None
                                 and self._session.reference == reference):
            return None
        if reference in self._ended:
            return self._ended[reference]
        if not reference.startswith(f"qbx-{self._origin}-") and self._resets_seen > 0:
            return Ending.RESET
        return None

    def _unsolicited(self, message: InterfaceMessage, shown: str) -> None:
        quiet = asyncio.get_running_loop().time() < self._quiet_until
        match message:
            case VendApproved(amount_cents=amount) if self._session is None:
                log.warning(
                    "%s: approval for %s with no vend request open (it crossed a cancel?): "
                    "voiding it at the reader", self._who, lines.format_amount(amount),
                )
                self._stray_approval = amount
                self._spawn(self._void_stray_under_lock())
            case Version() | ReaderReset() | ReaderInit() | ReaderIdle():
                pass  # status news, already tracked
            case VendDenied() | VendPending() | InterfaceError() if quiet:
                log.debug("%s: late answer after a cancel: %s", self._who, shown)
            case _:
                self._protocol_error(f"out-of-sequence line {shown!r}")

    def _protocol_error(self, text: str) -> None:
        self._protocol_errors += 1
        if self._requesting:
            self._result_garbled = True
        log.warning("%s: protocol error: %s", self._who, text)
        self._set_health(self.health.state, self.health.reason, self._detail())

    def _on_link_state(self, connected: bool, reason: str) -> None:
        if connected:
            if self._ready:  # else a reset right after the handshake is being recovered from
                self._set_health(HealthState.OK, self._ready_reason(), self._detail())
            return
        self._ready = False
        if self._waiter is not None:
            self._waiter.inbox.put_nowait(LinkLost(reason))
        if not self._closed:
            self._set_health(HealthState.OFFLINE, reason, self._detail())

    # --- hooks for the sale on top -------------------------------------------------------------

    async def _void_stray_under_lock(self) -> None:
        async with self._lock:
            await self._void_stray_approval()

    @abstractmethod
    async def _void_stray_approval(self) -> None:
        """Void the approval in ``_stray_approval`` (one that came with no request open)."""

    def _interrupt_request(self) -> None:
        if self._requesting and self._waiter is not None:
            self._waiter.inbox.put_nowait(HostCancel())

    # --- waiting with deadlines -----------------------------------------------------------------

    def _expect(self, accepts: tuple[type, ...]) -> Waiter:
        self._waiter = Waiter(accepts)
        return self._waiter

    def _release(self, waiter: Waiter) -> None:
        if self._waiter is waiter:
            self._waiter = None

    async def _next(self, waiter: Waiter, deadline: float) -> Incoming | None:
        """The next accepted line, or None at the deadline (a loop.time() value)."""
        if waiter.inbox.empty():
            try:
                async with asyncio.timeout_at(deadline):
                    item = await waiter.inbox.get()
            except TimeoutError:
                return None
        else:
            item = waiter.inbox.get_nowait()
        if isinstance(item, LinkLost):
            raise DeviceUnavailable(self._who, item.reason)
        return item

    async def _exchange(
        self, command: str, accepts: tuple[type, ...], expected: str, timeout: float | None = None
    ) -> Incoming:
        """Send one line and wait for the first answer of an accepted kind."""
        timeout = self.timing.reply_timeout if timeout is None else timeout
        # Lines carry no request id: an answer to a command sent during the quiet time after a
        # cancel could be the cancel's late answer, so wait the quiet time out first.
        await self._quiet()
        waiter = self._expect(accepts)
        try:
            await self._send(command)
            reply = await self._next(waiter, asyncio.get_running_loop().time() + timeout)
        finally:
            self._release(waiter)
        if reply is None:
            raise self._no_answer(f"sent {command}", expected, timeout)
        return reply

    async def _quiet(self) -> None:
        delay = self._quiet_until - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait_for(self, accepts: tuple[type, ...], expected: str, timeout: float) -> None:
        waiter = self._expect(accepts)
        try:
            reply = await self._next(waiter, asyncio.get_running_loop().time() + timeout)
        finally:
            self._release(waiter)
        if reply is None:
            raise self._no_answer("waited", expected, timeout)

    def _no_answer(self, what: str, expected: str, timeout: float) -> DeviceTimeout:
        error = DeviceTimeout(
            self._who, f"{what}, expected {expected} within {timeout:g} s; nothing came"
        )
        if not self._handshaking and self._link is not None and not self._closed:
            # A silent interface is as good as unplugged: reconnecting re-initialises the
            # reader (ending any session uncharged) and health comes back once it answers.
            self._ready = False
            self._set_health(HealthState.DEGRADED, error.message, self._detail())
            self._link.drop(error.message)
        return error

    async def _send(self, line: str) -> None:
        link = self._link
        if link is None or not link.connected:
            raise DeviceUnavailable(self._who, f"cannot send {line}: not connected")
        log.debug("%s -> %s", self.port, lines.loggable(line))
        await link.write(f"{line}\n".encode("ascii"))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._logged(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _logged(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except DeviceError as exc:
            log.warning("%s: %s", self._who, exc.message)
        except Exception:
            log.exception("%s: background task failed", self._who)

    # --- state for people ---------------------------------------------------------------------

    @property
    def _connected(self) -> bool:
        return self._link is not None and self._link.connected

    def _require_ready(self) -> None:
        if self._closed:
            raise DeviceUnavailable(self._who, "the driver is closed")
        if not self._connected:
            raise DeviceUnavailable(self._who, f"offline: {self.health.reason}")
        if not self._ready:
            raise DeviceUnavailable(self._who, f"not ready: {self.health.reason}")

    def _ready_reason(self) -> str:
        return "ready" if self._want_enabled else "ready; reader disabled (out of service)"

    def _detail(self) -> dict[str, object]:
        return {
            "port": self.port,
            "baud": self.baudrate,
            "firmware": self._firmware or "unknown",
            "always_idle": self._always_idle,
            "enabled": self._enabled,
            "protocol_errors": self._protocol_errors,
        }

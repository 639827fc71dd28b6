"""A Qibixx MDB interface with a cashless card reader behind it, served on a pseudo-terminal.

The real driver opens :attr:`CardSimulator.port` exactly as it would open ``/dev/ttyACM0``. The
simulator answers the line protocol of PROTOCOLS.md section 2 byte for byte; where that table
is silent it follows Qibixx's documentation: ``d,ERR,-1`` for a command that does not apply in
the current state, ``d,ERR,"cashless master is on"`` for a second ``D,1``/``D,2``, and no
answer at all to ``D,REQ,-1``, ``D,READER,0`` or ``D,0``.

Behind the interface stand a scriptable customer (:meth:`~CardSimulator.present_card`, or an
``auto`` answer to every request), faults (reset, malfunction, unplug, garbage, silence) and a
settlement report like a payment provider's: every vend request, whether it was captured,
reverted or is still open, with totals.

Replug: a recreated pty gets a new ``/dev/pts/N``, so ``.port`` is a symlink (``ttyACM0`` in a
private temporary directory) that always points at the current pty. :meth:`unplug` closes the
pty and removes the link, so opening the port fails as for a missing USB device; :meth:`replug`
makes a fresh pty (a power-cycled interface, master mode off) and points the link at it.

A background thread serves the pty with ``select()``, so the simulator works beside any event
loop and in plain synchronous tests. Every public method hands its work to that thread and
waits for it, so when a method returns its effect (and any line it writes) has happened.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import logging
import os
import queue
import re
import select
import shutil
import sys
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

from drivers.card.qibixx import QibixxCardReader
from drivers.card.timing import ReaderTiming, seconds_param
from drivers.registry import Attached, DeviceUrl, DeviceUrlError

log = logging.getLogger(__name__)
T = TypeVar("T")


class CardOutcome(StrEnum):
    """What the customer at the reader does with a vend request."""

    APPROVED = "approved"
    DECLINED = "declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    #: The customer presses cancel at the reader.
    CANCELLED = "cancelled"


class ReaderState(StrEnum):
    """The cashless reader's MDB state."""

    INACTIVE = "inactive"  # no master polls it, it just reset, or it is broken
    DISABLED = "disabled"
    ENABLED = "enabled"  # the interface reports this as d,STATUS,IDLE
    IDLE = "idle"  # MDB "session idle": a card opened a session (authorisation first only)
    VEND = "vend"  # a vend request is open, or approved and not yet ended


class Settlement(StrEnum):
    PENDING = "pending"  # the reader is asking for a card
    OPEN = "open"  # approved, neither captured nor reverted: money held
    CAPTURED = "captured"
    REVERTED = "reverted"
    DECLINED = "declined"
    CANCELLED = "cancelled"  # by the customer, at the reader
    ABANDONED = "abandoned"  # the machine cancelled the request, or went away before a result
    TIMED_OUT = "timed_out"  # nobody presented a card before the reader's own timeout


@dataclass
class Transaction:
    """One vend request as the payment provider sees it. ``reference`` is the provider's own."""

    sequence: int
    reference: str
    item: int
    requested_cents: int
    authorized_cents: int = 0
    status: Settlement = Settlement.PENDING
    note: str = ""


@dataclass(frozen=True)
class SettlementReport:
    """Every vend request so far, with the provider's totals. Nothing is charged unless captured."""

    transactions: tuple[Transaction, ...]

    def _sum(self, status: Settlement) -> int:
        return sum(t.authorized_cents for t in self.transactions if t.status is status)

    @property
    def authorizations(self) -> tuple[Transaction, ...]:
        """The requests the reader approved (whatever became of them)."""
        return tuple(t for t in self.transactions if t.authorized_cents)

    @property
    def captured_cents(self) -> int:
        return self._sum(Settlement.CAPTURED)

    @property
    def reverted_cents(self) -> int:
        return self._sum(Settlement.REVERTED)

    @property
    def open_cents(self) -> int:
        return self._sum(Settlement.OPEN)

    @property
    def open_sessions(self) -> int:
        return sum(t.status is Settlement.OPEN for t in self.transactions)

    @property
    def pending_requests(self) -> int:
        return sum(t.status is Settlement.PENDING for t in self.transactions)

    def count(self, status: Settlement) -> int:
        return sum(t.status is status for t in self.transactions)

    def to_dict(self) -> dict[str, object]:
        return {
            "transactions": [{**asdict(t), "status": t.status.value} for t in self.transactions],
            "totals": {
                "captured_cents": self.captured_cents,
                "reverted_cents": self.reverted_cents,
                "open_cents": self.open_cents,
                "open_sessions": self.open_sessions,
                "pending_requests": self.pending_requests,
                **{f"{status}_count": self.count(status) for status in Settlement},
            },
        }


@dataclass(frozen=True)
class _Card:
    outcome: CardOutcome
    delay: float = 0.0
    amount_cents: int | None = None  # approve this instead of the requested amount
    difference_cents: int = 0  # or approve the requested amount plus this


class _Call(Generic[T]):
    def __init__(self, work: Callable[[], T]) -> None:
        self.work = work
        self.done = threading.Event()
        self.results: list[T] = []
        self.error: BaseException | None = None


#: Lines no interface would send; one looks like card track data, which must never be logged.
GARBAGE = b"".join([
    b"\x00\xff\xfe\x80 line noise\n",
    b"d,STATUS\n",
    b"d,STATUS,RESULT,1,one euro\n",
    b"d,STATUS,INIT,7\n",
    b"d,STATUS,WHATEVER\n",
    b"track2 4111111111111111=2512\n",
    b"\r\n",
    b"x" * 600 + b"\n",
])

_AMOUNT = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,2}))?")


class CardSimulator:
    """A Qibixx interface in cashless master mode with a card reader and a customer behind it."""

    def __init__(
        self,
        *,
        auto: CardOutcome | str | None = None,
        auto_delay: float = 1.5,
        reader_timeout: float = 30.0,
        init_delay: float = 0.05,
        firmware: str = "4.0.1.5,MDB-USB simulator",
        link_dir: Path | None = None,
    ) -> None:
        """Start serving at once.

        ``auto`` answers every request nobody scripted (after ``auto_delay`` s; None: nobody
        answers and the reader denies after ``reader_timeout`` s). ``init_delay`` is how long
        the reader takes to set up after a reset. ``link_dir`` is where the port's private
        directory is made (default: the system's temporary directory). ``reader_timeout`` and
        ``init_delay`` may be changed on the instance between requests.
        """
        self.firmware = firmware
        self.init_delay = init_delay
        self.reader_timeout = reader_timeout
        self._auto = CardOutcome(auto) if auto else None
        self._auto_delay = auto_delay
        self._dir = Path(tempfile.mkdtemp(prefix="kiosk-card-sim-", dir=link_dir))
        self._link = self._dir / "ttyACM0"
        self._controller: int | None = None
        self._follower: int | None = None
        self._input = bytearray()
        self._received: list[str] = []
        self._sent: list[str] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._calls: queue.SimpleQueue[_Call[object]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._master = 0
        self._generation = 0  # bumped on every reset, so a stale INIT timer does nothing
        self._initialised = self._enabled = self._card_session = False
        self._broken = self._muted = False
        self._session: Transaction | None = None
        self._cards: deque[_Card] = deque()
        self._transactions: list[Transaction] = []
        self._stopping = self._closed = False
        self._plug()
        self._thread = threading.Thread(target=self._serve, name="card simulator", daemon=True)
        self._thread.start()

    def __enter__(self) -> CardSimulator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what tests and people see ------------------------------------------------------------

    @property
    def port(self) -> str:
        """The path a driver opens; stays the same across unplug and replug."""
        return str(self._link)

    @property
    def plugged(self) -> bool:
        return self._call(lambda: self._controller is not None)

    @property
    def reader_state(self) -> ReaderState:
        return self._call(self._reader_state)

    @property
    def master_mode(self) -> int:
        """0 = cashless master off, 1 = authorisation first, 2 = selection first."""
        return self._call(lambda: self._master)

    @property
    def received(self) -> list[str]:
        """Every line the host sent, in order, without newlines."""
        return self._call(lambda: list(self._received))

    @property
    def sent(self) -> list[str]:
        """Every line the interface sent, in order (injected raw bytes not included)."""
        return self._call(lambda: list(self._sent))

    def settlement(self) -> SettlementReport:
        return self._call(lambda: SettlementReport(tuple(replace(t) for t in self._transactions)))

    def wait_until(self, condition: Callable[[CardSimulator], bool], timeout: float = 2.0) -> None:
        """Block until ``condition(self)`` holds (for synchronous tests); AssertionError if not."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"card simulator: condition not met within {timeout} s")
            time.sleep(0.01)

    # --- the customer ---------------------------------------------------------------------------

    def present_card(
        self, outcome: CardOutcome | str = CardOutcome.APPROVED, *, delay: float = 0.0,
        amount_cents: int | None = None,
    ) -> bool:
        """Answer the open vend request (True), or the next one (False) if none is open."""
        return self._call(lambda: self._present(_Card(CardOutcome(outcome), delay, amount_cents)))

    def customer_cancels(self, delay: float = 0.0) -> bool:
        """The customer presses cancel at the reader."""
        return self.present_card(CardOutcome.CANCELLED, delay=delay)

    def approve_wrong_amount(self, difference_cents: int = 50) -> bool:
        """The reader approves the requested amount plus ``difference_cents``."""
        card = _Card(CardOutcome.APPROVED, difference_cents=difference_cents)
        return self._call(lambda: self._present(card))

    def set_auto(self, outcome: CardOutcome | str | None, delay: float | None = None) -> None:
        """Answer every request nobody scripted with ``outcome`` after ``delay`` (None: never)."""

        def change() -> None:
            self._auto = CardOutcome(outcome) if outcome else None
            self._auto_delay = self._auto_delay if delay is None else delay

        self._call(change)

    # --- faults ---------------------------------------------------------------------------------

    def reset_reader(self) -> None:
        """The reader resets: any session ends uncharged, then it sets itself up again."""
        self._call(lambda: self._reset("the reader reset"))

    def malfunction(self) -> None:
        """The reader breaks: it resets and does not come back until :meth:`repair`."""

        def breaks() -> None:
            self._broken = True
            self._reset("reader malfunction")

        self._call(breaks)

    def repair(self) -> None:
        def repaired() -> None:
            self._broken = False
            if self._master and not self._initialised:
                self._after(self.init_delay, self._initialise(self._generation))

        self._call(repaired)

    def unplug(self) -> None:
        """Pull the USB cable: the port disappears and the interface loses all state."""
        self._call(self._unplug)

    def replug(self) -> None:
        """Plug it back in: a fresh pty behind the same :attr:`port`, master mode off."""
        self._call(lambda: None if self._controller is not None else self._plug())

    def stop_answering(self) -> None:
        """The interface hangs: it reads every line and answers none, nor does the customer."""
        self._call(lambda: setattr(self, "_muted", True))

    def resume_answering(self) -> None:
        self._call(lambda: setattr(self, "_muted", False))

    def send_garbage(self, data: bytes = GARBAGE) -> None:
        """Write raw bytes to the host, line noise by default."""
        self._call(lambda: self._write(data))

    def send_line(self, line: str) -> None:
        """Write one line to the host as if the interface had sent it (even when muted)."""
        self._call(lambda: self._write(f"{line}\n".encode("ascii", "replace")))

    def close(self) -> None:
        """Unplug, stop the thread and remove the port's directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._call(self._shutdown)
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- the interface: commands from the host ------------------------------------------------

    def _on_command(self, line: str) -> None:
        self._received.append(line)
        if self._muted:
            return
        match line.split(","):
            case ["V"]:
                self._say(f"v,{self.firmware}")
            case ["D", "0"]:
                self._master_off("the machine switched the cashless master off")
            case ["D", ("1" | "2") as mode]:
                self._master_on(int(mode))
            case ["D", "READER", "1"]:
                self._reader_on()
            case ["D", "READER", "0"]:
                self._reader_off()
            case ["D", "REQ", "-1"]:
                self._cancel_request()
            case ["D", "REQ", amount, item]:
                self._vend_request(amount, item)
            case ["D", "END", "-1"]:
                self._end_vend(success=False)
            case ["D", "END"] | ["D", "END", _]:  # D,END,<item> from firmware 3.8 on
                self._end_vend(success=True)
            case ["D", *_]:
                self._say("d,ERR,-1")
            case _:
                pass  # other subsystems' commands (coins, bills, slave mode) are not emulated

    def _master_on(self, mode: int) -> None:
        if self._master:
            self._say('d,ERR,"cashless master is on"')
            return
        self._master = mode
        self._reset("the cashless master started")

    def _master_off(self, note: str) -> None:
        self._end_session(note)
        self._master = 0
        self._generation += 1
        self._initialised = self._enabled = False

    def _reader_on(self) -> None:
        if not (self._master and self._initialised) or self._session is not None:
            self._say("d,ERR,-1")
            return
        self._enabled = True
        self._say("d,STATUS,IDLE")

    def _reader_off(self) -> None:
        if not (self._master and self._initialised):
            self._say("d,ERR,-1")
            return
        self._enabled = False
        if self._session is not None and self._session.status is Settlement.PENDING:
            self._end_session("the machine disabled the reader")

    def _vend_request(self, amount: str, item: str) -> None:
        cents = _cents(amount)
        may_vend = self._master and self._initialised and self._enabled and self._session is None
        if self._master == 1:  # authorisation first: a card must have opened the session
            may_vend = may_vend and self._card_session
        if not cents or not re.fullmatch(r"[0-9]{1,5}", item) or not may_vend:
            self._say("d,ERR,-1")
            return
        sequence = len(self._transactions) + 1
        txn = Transaction(sequence, f"SIM-{sequence:06d}", int(item), cents)
        self._transactions.append(txn)
        self._session = txn
        self._say("d,STATUS,VEND")
        card = self._cards.popleft() if self._cards else None
        if card is None and self._auto is not None:
            card = _Card(self._auto, self._auto_delay)
        if card is None:
            self._after(self.reader_timeout, lambda: self._reader_timed_out(txn))
        else:
            self._answer(txn, card)

    def _cancel_request(self) -> None:
        if self._session is None or self._session.status is not Settlement.PENDING:
            self._say("d,ERR,-1")
            return
        self._end_session("the machine cancelled the request")

    def _end_vend(self, success: bool) -> None:
        txn = self._session
        if txn is None or txn.status is not Settlement.OPEN:
            self._say("d,ERR,-1")
            return
        txn.status = Settlement.CAPTURED if success else Settlement.REVERTED
        txn.note = "" if success else "vend failure reported by the machine"
        self._session, self._card_session = None, False
        self._say("d,STATUS,IDLE")

    # --- the reader and the customer ----------------------------------------------------------

    def _present(self, card: _Card) -> bool:
        txn = self._session
        if txn is not None and txn.status is Settlement.PENDING:
            self._answer(txn, card)
            return True
        self._cards.append(card)
        if self._master == 1 and self._enabled and txn is None and not self._card_session:
            self._card_session = True
            self._say("d,STATUS,CREDIT,-1")
        return False

    def _answer(self, txn: Transaction, card: _Card) -> None:
        if card.delay > 0:
            self._after(card.delay, lambda: self._card_presented(txn, card))
        else:  # at once, so the line is out before the caller's present_card() returns
            self._card_presented(txn, card)

    def _card_presented(self, txn: Transaction, card: _Card) -> None:
        if self._session is not txn or txn.status is not Settlement.PENDING or self._muted:
            return
        if card.outcome is CardOutcome.APPROVED:
            amount = card.amount_cents or txn.requested_cents + card.difference_cents
            txn.authorized_cents, txn.status = amount, Settlement.OPEN
            self._say(f"d,STATUS,RESULT,1,{amount // 100}.{amount % 100:02d}")
            return
        txn.status, txn.note = {
            CardOutcome.DECLINED: (Settlement.DECLINED, "card declined by the issuer"),
            CardOutcome.INSUFFICIENT_FUNDS: (Settlement.DECLINED, "insufficient funds"),
            CardOutcome.CANCELLED: (Settlement.CANCELLED, "the customer cancelled at the reader"),
        }[card.outcome]
        self._session, self._card_session = None, False
        self._say("d,STATUS,RESULT,-1")

    def _reader_timed_out(self, txn: Transaction) -> None:
        if self._session is not txn or txn.status is not Settlement.PENDING or self._muted:
            return
        txn.status = Settlement.TIMED_OUT
        txn.note = f"no card presented within {self.reader_timeout:g} s"
        self._session, self._card_session = None, False
        self._say("d,STATUS,RESULT,-1")

    def _reset(self, note: str) -> None:
        self._end_session(note)
        self._generation += 1
        self._initialised = self._enabled = False
        if self._master:
            self._say("d,STATUS,RESET")
            if not self._broken:
                self._after(self.init_delay, self._initialise(self._generation))

    def _initialise(self, generation: int) -> Callable[[], None]:
        def initialised() -> None:
            if generation == self._generation and self._master and not self._broken:
                self._initialised = True
                self._say("d,STATUS,INIT,1")

        return initialised

    def _end_session(self, note: str) -> None:
        """End whatever session there is without a charge: the reader never charges unconfirmed."""
        txn, self._session, self._card_session = self._session, None, False
        if txn is not None:
            txn.status = Settlement.REVERTED if txn.status is Settlement.OPEN else (
                Settlement.ABANDONED
            )
            txn.note = note

    def _reader_state(self) -> ReaderState:
        if self._controller is None or not self._master or not self._initialised:
            return ReaderState.INACTIVE
        if self._session is not None:
            return ReaderState.VEND
        if self._card_session:
            return ReaderState.IDLE
        return ReaderState.ENABLED if self._enabled else ReaderState.DISABLED

    # --- the pty and the thread ---------------------------------------------------------------

    def _plug(self) -> None:
        controller, follower = os.openpty()
        tty.setraw(follower)
        os.set_blocking(controller, False)
        self._controller, self._follower = controller, follower
        self._muted = False
        # Point the stable link at the new pty atomically: a driver never sees a half-made link.
        fresh = self._dir / "ttyACM0.new"
        fresh.unlink(missing_ok=True)
        os.symlink(os.ttyname(follower), fresh)
        os.replace(fresh, self._link)

    def _unplug(self) -> None:
        if self._controller is None:
            return
        self._master_off("the interface was unplugged")
        self._link.unlink(missing_ok=True)
        for fd in (self._controller, self._follower):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._controller = self._follower = None
        self._input.clear()

    def _shutdown(self) -> None:
        self._unplug()
        self._stopping = True

    def _say(self, line: str) -> None:
        if self._muted or self._controller is None:
            return
        self._sent.append(line)
        self._write(f"{line}\n".encode("ascii"))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._controller is not None:
            try:
                view = view[os.write(self._controller, view) :]
            except BlockingIOError:
                # The host is not reading and the pty buffer is full: a UART would lose these too.
                log.warning("card simulator: host not reading; dropped %d bytes", len(view))
                return
            except OSError as exc:
                log.warning("card simulator: write failed: %s", exc)
                return

    def _after(self, delay: float, work: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), work))

    def _call(self, work: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return work()
        call: _Call[T] = _Call(work)
        self._calls.put(call)  # type: ignore[arg-type]
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")
        if not call.done.wait(5.0):
            raise RuntimeError("card simulator: its thread did not answer within 5 s")
        if call.error is not None:
            raise call.error
        return call.results[0]

    def _serve(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:  # a bug in one handler must not silence the device
                log.exception("card simulator: handler failed")

    def _step(self) -> bool:
        """One turn of the loop: calls, due timers, then wait for input. True when stopping."""
        while not self._calls.empty():
            call = self._calls.get_nowait()
            try:
                call.results.append(call.work())
            except BaseException as exc:
                call.error = exc
            call.done.set()
        if self._stopping:
            return True
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        timeout = max(0.0, self._timers[0][0] - now) if self._timers else None
        watched = [self._wake_r] + ([self._controller] if self._controller is not None else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        if self._controller is not None and self._controller in ready:
            self._read_host()
        return False

    def _read_host(self) -> None:
        assert self._controller is not None
        try:
            data = os.read(self._controller, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # cannot happen while we hold the follower open; never spin on it anyway
            time.sleep(0.01)
            return
        *complete, rest = (self._input + data).split(b"\n")
        self._input = bytearray(rest[-1024:])
        for raw in complete:
            self._on_command(raw.rstrip(b"\r").decode("ascii", "replace"))


def _cents(text: str) -> int | None:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))


# --- the kiosk's entry points -------------------------------------------------------------------


def attach(url: DeviceUrl, state_dir: Path) -> Attached:
    """``sim://?auto=approve&auto_delay=1.5&reader_timeout=30``: a simulator and the real driver.

    ``auto`` is approved (the default, so a developer can buy), declined, insufficient_funds,
    cancelled or off. The driver's timing parameters (reply_timeout ...) pass through.
    """
    known = {"auto", "auto_delay", "reader_timeout"} | ReaderTiming.parameter_names()
    unknown = sorted(set(url.params) - known)
    if unknown:
        raise DeviceUrlError(
            f"unknown parameter(s) {', '.join(unknown)} in {url.raw!r}; "
            f"known: {', '.join(sorted(known))}"
        )
    auto = url.param("auto", CardOutcome.APPROVED)
    if auto != "off" and auto not in set(CardOutcome):
        choices = ", ".join([*CardOutcome, "off"])
        raise DeviceUrlError(f"auto={auto!r} in {url.raw!r} is not one of {choices}")
    state_dir.mkdir(parents=True, exist_ok=True)
    simulator = CardSimulator(
        auto=None if auto == "off" else auto,
        auto_delay=seconds_param(url, "auto_delay", 1.5),
        reader_timeout=seconds_param(url, "reader_timeout", 30.0),
        link_dir=state_dir,
    )
    try:
        timing = ReaderTiming.from_url(url)
    except DeviceUrlError:
        simulator.close()
        raise
    description = f"sim:// (simulated Qibixx interface on {simulator.port})"
    return Attached(QibixxCardReader(simulator.port, timing=timing, description=description),
                    simulator)


_FAULTS: dict[str, tuple[Callable[[CardSimulator], object], str]] = {
    "reset": (CardSimulator.reset_reader, "reader reset; any session ends uncharged"),
    "malfunction": (CardSimulator.malfunction, "reader broken until 'fault repair'"),
    "repair": (CardSimulator.repair, "reader repaired"),
    "unplug": (CardSimulator.unplug, "interface unplugged"),
    "replug": (CardSimulator.replug, "interface plugged back in"),
    "garbage": (CardSimulator.send_garbage, "line noise sent"),
    "mute": (CardSimulator.stop_answering, "interface stopped answering"),
    "unmute": (CardSimulator.resume_answering, "interface answers again"),
    "wrong_amount": (CardSimulator.approve_wrong_amount, "reader approves 0.50 too much"),
}


def _console_answer(sim: CardSimulator, words: list[str]) -> str:
    customer = {"approve": CardOutcome.APPROVED, "decline": CardOutcome.DECLINED,
                "insufficient": CardOutcome.INSUFFICIENT_FUNDS, "cancel": CardOutcome.CANCELLED}
    match words:
        case [verb] if verb in customer:
            now = sim.present_card(customer[verb])
            return f"ok: {customer[verb]} {'now' if now else 'on the next request'}"
        case ["fault", name] if name in _FAULTS:
            action, said = _FAULTS[name]
            action(sim)
            return f"ok: {said}"
        case ["auto", mode] if mode == "off" or mode in set(CardOutcome):
            sim.set_auto(None if mode == "off" else mode)
            return f"ok: auto {mode}"
        case ["state"]:
            return (f"state: reader={sim.reader_state} master={sim.master_mode} "
                    f"plugged={sim.plugged}")
        case ["report"]:
            return json.dumps(sim.settlement().to_dict())
        case ["help"]:
            return ("commands: approve, decline, insufficient, cancel, auto MODE|off, state, "
                    f"report, quit, fault {'|'.join(_FAULTS)}")
        case _:
            return f"error: unknown command {' '.join(words)!r}; try help"


def console(argv: list[str]) -> int:
    """``kiosk simulate card``: print the port, then obey one command per line on stdin."""
    parser = argparse.ArgumentParser(
        prog="kiosk simulate card",
        description="A simulated Qibixx MDB interface with a card reader, on a pseudo-terminal. "
        "Prints the port on the first line, then reads commands (try 'help').",
    )
    parser.add_argument("--auto", choices=[*CardOutcome, "off"], default="off",
                        help="answer every request nobody scripted (default: off)")
    parser.add_argument("--auto-delay", type=float, default=1.5, metavar="SECONDS")
    parser.add_argument("--reader-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long the reader waits for a card before denying")
    args = parser.parse_args(argv)
    with CardSimulator(auto=None if args.auto == "off" else args.auto,
                       auto_delay=args.auto_delay, reader_timeout=args.reader_timeout) as sim:
        print(sim.port, flush=True)
        for raw in sys.stdin:
            words = raw.split()
            if words == ["quit"]:
                print("ok: bye", flush=True)
                break
            if words:
                print(_console_answer(sim, words), flush=True)
    return 0

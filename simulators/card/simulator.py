"""The card reader simulator: the emulated interface on a pty, driven by tests and people.

The interface itself is :mod:`simulators.card.reader`; the pty, its thread, unplug and replug
are :mod:`simulators.pty_port`. Every public method takes the simulator's lock, which the
port's thread holds while it serves the interface, so when a method returns its effect (and
any line it writes) has happened. It first takes every line the host has already written, so
a test that asks right after the driver wrote sees that line's effect.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from simulators.card.reader import CardOutcome, QibixxInterface, ReaderState
from simulators.card.settlement import LISTED, SettlementReport
from simulators.pty_port import LineFeed, PtyPort

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
        listed: int = LISTED,
    ) -> None:
        """Start serving at once.

        ``auto`` answers every request nobody scripted (after ``auto_delay`` s; None: nobody
        answers and the reader denies after ``reader_timeout`` s). ``init_delay`` is how long
        the reader takes to set up after a reset. ``link_dir`` is where the port's private
        directory is made (default: the system's temporary directory). ``listed``: how many of
        the latest vend requests the settlement report lists one by one (its totals count every
        request). ``reader_timeout`` and ``init_delay`` may be changed on the instance between
        requests.
        """
        self._lock = threading.RLock()
        self._truncate = 0  # lines still to be cut short on the wire
        self._interface = QibixxInterface(
            self._send,
            self._after,
            firmware=firmware,
            init_delay=init_delay,
            reader_timeout=reader_timeout,
            auto=CardOutcome(auto) if auto else None,
            auto_delay=auto_delay,
            listed=listed,
        )
        self._feed = LineFeed(self._interface.command)
        self._pty = PtyPort(
            self._feed,
            name="ttyACM0",
            prefix="kiosk-card-sim-",
            link_dir=link_dir,
            lock=self._lock,
            on_plug=self._interface.power_up,
            on_unplug=self._power_down,
            drop_unread=True,  # a UART would lose what the host does not read too
        )

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
        return self._pty.port

    @property
    def plugged(self) -> bool:
        return self._pty.plugged

    @property
    def reader_state(self) -> ReaderState:
        with self._caught_up() as interface:
            return interface.state

    @property
    def master_mode(self) -> int:
        """0 = cashless master off, 1 = authorisation first, 2 = selection first."""
        with self._caught_up() as interface:
            return interface.master

    @property
    def received(self) -> list[str]:
        """The lines the host sent, in order, without newlines (the latest ``LINES_KEPT``)."""
        with self._caught_up() as interface:
            return list(interface.received)

    @property
    def sent(self) -> list[str]:
        """The lines the interface sent, in order (the latest ``LINES_KEPT``; injected raw
        bytes not included)."""
        with self._caught_up() as interface:
            return list(interface.sent)

    @property
    def firmware(self) -> str:
        return self._interface.firmware

    @firmware.setter
    def firmware(self, value: str) -> None:
        self._interface.firmware = value

    @property
    def init_delay(self) -> float:
        """How long the reader takes to set up after a reset, in seconds."""
        return self._interface.init_delay

    @init_delay.setter
    def init_delay(self, value: float) -> None:
        self._interface.init_delay = value

    @property
    def reader_timeout(self) -> float:
        """How long the reader waits for a card before it denies, in seconds."""
        return self._interface.reader_timeout

    @reader_timeout.setter
    def reader_timeout(self, value: float) -> None:
        self._interface.reader_timeout = value

    def settlement(self) -> SettlementReport:
        with self._caught_up() as interface:
            return interface.settlement()

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
        card = CardOutcome(outcome)
        with self._caught_up() as interface:
            return interface.present(card, delay=delay, amount_cents=amount_cents)

    def customer_cancels(self, delay: float = 0.0) -> bool:
        """The customer presses cancel at the reader."""
        return self.present_card(CardOutcome.CANCELLED, delay=delay)

    def approve_wrong_amount(self, difference_cents: int = 50) -> bool:
        """The reader approves the requested amount plus ``difference_cents``."""
        with self._caught_up() as interface:
            return interface.present(CardOutcome.APPROVED, difference_cents=difference_cents)

    def set_auto(self, outcome: CardOutcome | str | None, delay: float | None = None) -> None:
        """Answer every request nobody scripted with ``outcome`` after ``delay`` (None: never)."""
        auto = CardOutcome(outcome) if outcome else None
        with self._caught_up() as interface:
            interface.auto = auto
            if delay is not None:
                interface.auto_delay = delay

    # --- faults ---------------------------------------------------------------------------------

    def reset_reader(self) -> None:
        """The reader resets: any session ends uncharged, then it sets itself up again."""
        with self._caught_up() as interface:
            interface.reset("the reader reset")

    def malfunction(self) -> None:
        """The reader breaks: it resets and does not come back until :meth:`repair`."""
        with self._caught_up() as interface:
            interface.malfunction()

    def repair(self) -> None:
        with self._caught_up() as interface:
            interface.repair()

    def unplug(self) -> None:
        """Pull the USB cable: the port disappears and the interface loses all state."""
        self._pty.catch_up()  # what the host sent before the cable came out was read
        self._pty.unplug()

    def replug(self) -> None:
        """Plug it back in: a fresh pty behind the same :attr:`port`, master mode off."""
        self._pty.replug()

    def stop_answering(self) -> None:
        """The interface hangs: it reads every line and answers none, nor does the customer."""
        with self._caught_up() as interface:
            interface.muted = True

    def resume_answering(self) -> None:
        with self._caught_up() as interface:
            interface.muted = False

    def send_garbage(self, data: bytes = GARBAGE) -> None:
        """Write raw bytes to the host, line noise by default."""
        with self._caught_up():
            self._pty.send(data)

    def truncate_next_lines(self, count: int = 1) -> None:
        """The interface's next ``count`` lines lose their second half on the wire.

        The newline still arrives, so the host sees a short line where the whole one was due,
        as when a UART drops bytes in the middle of a line.
        """
        with self._caught_up():
            self._truncate += count

    def replay_result(self) -> bool:
        """Send the interface's last vend result (approval or denial) again: a stale line.

        False (and nothing sent) when no request has had a result yet.
        """
        with self._caught_up() as interface:
            last = interface.last_result
            if last is None:
                return False
            self._pty.send(f"{last}\n".encode("ascii"))
            return True

    def send_line(self, line: str) -> None:
        """Write one line to the host as if the interface had sent it (even when muted)."""
        with self._caught_up():
            self._pty.send(f"{line}\n".encode("ascii", "replace"))

    def close(self) -> None:
        """Unplug, stop the thread and remove the port's directory. Idempotent."""
        self._pty.catch_up()
        self._pty.close()

    # --- the interface's wire, always under the lock ------------------------------------------

    @contextlib.contextmanager
    def _caught_up(self) -> Iterator[QibixxInterface]:
        """The interface, locked, once it has taken every line the host has already sent."""
        with self._lock:
            self._pty.catch_up()
            yield self._interface

    def _power_down(self) -> None:
        self._interface.power_down()
        self._feed.clear()

    def _send(self, data: bytes) -> None:
        if self._truncate and data.endswith(b"\n"):
            self._truncate -= 1
            line = data[:-1]
            data = line[: len(line) // 2] + b"\n"
        self._pty.send(data)

    def _after(self, delay: float, work: Callable[[], None]) -> None:
        self._pty.after(delay, work)

"""The emulated Qibixx MDB interface in cashless master mode, with the card reader behind it.

It answers the line protocol of PROTOCOLS.md section 2 byte for byte; where that table is
silent it follows Qibixx's documentation: ``d,ERR,-1`` for a command that does not apply in
the current state, ``d,ERR,"cashless master is on"`` for a second ``D,1``/``D,2``, and no
answer at all to ``D,REQ,-1``, ``D,READER,0`` or ``D,0``.

No port and no thread here: lines go out through ``send``, later work (the reader setting
itself up, a customer taking their time, the reader's own timeout) through ``after``, and the
caller serialises every call, as :class:`~simulators.card.CardSimulator` does with one lock.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from simulators.card.settlement import (
    LISTED,
    Settlement,
    SettlementBook,
    SettlementReport,
    Transaction,
)

#: ``after(delay, work)``: run ``work`` ``delay`` seconds from now, serialised with every call.
Schedule = Callable[[float, Callable[[], None]], None]

#: Lines each way the interface remembers, the latest: enough for any test's look back, and
#: bounded, since a simulated reader serving a kiosk for weeks sees a few lines every sale.
LINES_KEPT = 1000


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


@dataclass(frozen=True)
class _Card:
    outcome: CardOutcome
    delay: float = 0.0
    amount_cents: int | None = None  # approve this instead of the requested amount
    difference_cents: int = 0  # or approve the requested amount plus this


_AMOUNT = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,2}))?")


class QibixxInterface:
    """A Qibixx interface with a cashless reader and a customer behind it, minus the wire.

    ``auto`` answers every request nobody scripted after ``auto_delay`` s (None: nobody
    answers and the reader denies after ``reader_timeout`` s). ``init_delay`` is how long the
    reader takes to set up after a reset. These attributes may change between requests.
    ``listed``: how many of the latest requests the settlement report lists one by one.
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        after: Schedule,
        *,
        firmware: str,
        init_delay: float,
        reader_timeout: float,
        auto: CardOutcome | None,
        auto_delay: float,
        listed: int = LISTED,
    ) -> None:
        self._send = send
        self._after = after
        self.firmware = firmware
        self.init_delay = init_delay
        self.reader_timeout = reader_timeout
        self.auto = auto
        self.auto_delay = auto_delay
        #: The latest lines the host sent (up to LINES_KEPT), in order, without newlines.
        self.received: deque[str] = deque(maxlen=LINES_KEPT)
        #: The latest lines the interface sent (up to LINES_KEPT), in order.
        self.sent: deque[str] = deque(maxlen=LINES_KEPT)
        #: The last vend result the interface sent (approval or denial), if any.
        self.last_result: str | None = None
        #: 0 = cashless master off, 1 = authorisation first, 2 = selection first.
        self.master = 0
        #: The interface hangs: it reads every line and answers none, nor does the customer.
        self.muted = False
        self.plugged = False
        self._generation = 0  # bumped on every reset, so a stale INIT timer does nothing
        self._initialised = self._enabled = self._card_session = False
        self._broken = False
        self._session: Transaction | None = None
        self._cards: deque[_Card] = deque()
        self._book = SettlementBook(listed)

    @property
    def state(self) -> ReaderState:
        if not self.plugged or not self.master or not self._initialised:
            return ReaderState.INACTIVE
        if self._session is not None:
            return ReaderState.VEND
        if self._card_session:
            return ReaderState.IDLE
        return ReaderState.ENABLED if self._enabled else ReaderState.DISABLED

    def settlement(self) -> SettlementReport:
        """A copy of the latest vend requests, with the totals of every one so far."""
        return self._book.report()

    # --- power --------------------------------------------------------------------------------

    def power_up(self) -> None:
        """Plugged in: a fresh interface, master mode off and answering."""
        self.plugged = True
        self.muted = False

    def power_down(self) -> None:
        """Unplugged: the interface loses all state and any session ends uncharged."""
        self._master_off("the interface was unplugged")
        self.plugged = False

    # --- the customer and faults --------------------------------------------------------------

    def present(
        self, outcome: CardOutcome, *, delay: float = 0.0, amount_cents: int | None = None,
        difference_cents: int = 0,
    ) -> bool:
        """Answer the open vend request (True), or the next one (False) if none is open."""
        card = _Card(outcome, delay, amount_cents, difference_cents)
        txn = self._session
        if txn is not None and txn.status is Settlement.PENDING:
            self._answer(txn, card)
            return True
        self._cards.append(card)
        if self.master == 1 and self._enabled and txn is None and not self._card_session:
            self._card_session = True
            self._say("d,STATUS,CREDIT,-1")
        return False

    def reset(self, note: str) -> None:
        """The reader resets: any session ends uncharged (``note`` says why), then it sets up."""
        self._end_session(note)
        self._generation += 1
        self._initialised = self._enabled = False
        if self.master:
            self._say("d,STATUS,RESET")
            if not self._broken:
                self._after(self.init_delay, self._initialise(self._generation))

    def malfunction(self) -> None:
        """The reader breaks: it resets and does not come back until :meth:`repair`."""
        self._broken = True
        self.reset("reader malfunction")

    def repair(self) -> None:
        self._broken = False
        if self.master and not self._initialised:
            self._after(self.init_delay, self._initialise(self._generation))

    # --- commands from the host ---------------------------------------------------------------

    def command(self, line: str) -> None:
        """One line from the host, without its newline."""
        self.received.append(line)
        if self.muted:
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
        if self.master:
            self._say('d,ERR,"cashless master is on"')
            return
        self.master = mode
        self.reset("the cashless master started")

    def _master_off(self, note: str) -> None:
        self._end_session(note)
        self.master = 0
        self._generation += 1
        self._initialised = self._enabled = False

    def _reader_on(self) -> None:
        if not (self.master and self._initialised) or self._session is not None:
            self._say("d,ERR,-1")
            return
        self._enabled = True
        self._say("d,STATUS,IDLE")

    def _reader_off(self) -> None:
        if not (self.master and self._initialised):
            self._say("d,ERR,-1")
            return
        self._enabled = False
        if self._session is not None and self._session.status is Settlement.PENDING:
            self._end_session("the machine disabled the reader")

    def _vend_request(self, amount: str, item: str) -> None:
        cents = _cents(amount)
        may_vend = self.master and self._initialised and self._enabled and self._session is None
        if self.master == 1:  # authorisation first: a card must have opened the session
            may_vend = may_vend and self._card_session
        if not cents or not re.fullmatch(r"[0-9]{1,5}", item) or not may_vend:
            self._say("d,ERR,-1")
            return
        txn = self._book.request(int(item), cents)
        self._session = txn
        self._say("d,STATUS,VEND")
        card = self._cards.popleft() if self._cards else None
        if card is None and self.auto is not None:
            card = _Card(self.auto, self.auto_delay)
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

    def _answer(self, txn: Transaction, card: _Card) -> None:
        if card.delay > 0:
            self._after(card.delay, lambda: self._card_presented(txn, card))
        else:  # at once, so the line is out before the caller's present_card() returns
            self._card_presented(txn, card)

    def _card_presented(self, txn: Transaction, card: _Card) -> None:
        if self._session is not txn or txn.status is not Settlement.PENDING or self.muted:
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
        if self._session is not txn or txn.status is not Settlement.PENDING or self.muted:
            return
        txn.status = Settlement.TIMED_OUT
        txn.note = f"no card presented within {self.reader_timeout:g} s"
        self._session, self._card_session = None, False
        self._say("d,STATUS,RESULT,-1")

    def _initialise(self, generation: int) -> Callable[[], None]:
        def initialised() -> None:
            if generation == self._generation and self.master and not self._broken:
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

    def _say(self, line: str) -> None:
        if self.muted or not self.plugged:
            return
        self.sent.append(line)
        if line.startswith("d,STATUS,RESULT,"):
            self.last_result = line
        self._send(f"{line}\n".encode("ascii"))


def _cents(text: str) -> int | None:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))

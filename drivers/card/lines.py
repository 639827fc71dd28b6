"""The Qibixx MDB interface's line protocol, cashless master side (PROTOCOLS.md section 2).

One message per line, ASCII, ending in ``\\n``. Upper-case ``D,...`` lines go to the interface,
lower-case ``d,...`` lines come back, ``V`` asks for the firmware version (answered ``v,...``).
The interface may append the reader's setup data after a ``#`` field
(``d,STATUS,IDLE,#,3,1756,1,2,30,8``); that tail is ignored here.

Parsing never raises: a line outside the protocol becomes :class:`Unrecognised` with the reason,
so the driver can log it and carry on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

# --- what the host sends --------------------------------------------------------------------

ASK_VERSION = "V"
MASTER_OFF = "D,0"
#: Cashless master, selection first ("always idle"): the machine asks for a price, then a card.
MASTER_SELECTION_FIRST = "D,2"
READER_ON = "D,READER,1"
READER_OFF = "D,READER,0"
CANCEL_REQUEST = "D,REQ,-1"
#: Vend success: the product was delivered, the reader completes the charge.
VEND_SUCCESS = "D,END"
#: Vend failure: the product was not delivered, the reader reverts the charge.
VEND_FAILURE = "D,END,-1"


def vend_request(amount_cents: int, item: int) -> str:
    """``D,REQ,1.20,10``: ask the reader for a card to pay ``amount_cents`` for ``item``."""
    if item < 0:
        raise ValueError(f"item must be a product number >= 0, not {item}")
    return f"D,REQ,{format_amount(amount_cents)},{item}"


def format_amount(cents: int) -> str:
    """Integer cents as the interface writes money: ``120`` -> ``"1.20"``."""
    if cents < 0:
        raise ValueError(f"an amount cannot be negative: {cents}")
    return f"{cents // 100}.{cents % 100:02d}"


# [0-9], not \d: \d also matches other scripts' digits, which int() would happily accept.
_AMOUNT = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,2}))?")


def parse_amount(text: str) -> int | None:
    """``"1.20"``, ``"1.2"`` or ``"1"`` -> cents; ``None`` for anything else."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    whole, fraction = match.groups()
    return int(whole) * 100 + int((fraction or "0").ljust(2, "0"))


# --- what comes back ------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """``v,...``: the interface's firmware version, as it wrote it."""

    text: str


@dataclass(frozen=True)
class ReaderReset:
    """``d,STATUS,RESET``: the reader just reset; any session on it has ended."""


@dataclass(frozen=True)
class ReaderInit:
    """``d,STATUS,INIT,n``: the reader is set up and disabled; n=1 means always-idle capable."""

    always_idle: bool


@dataclass(frozen=True)
class ReaderIdle:
    """``d,STATUS,IDLE``: the reader is enabled and waits for a vend request."""


@dataclass(frozen=True)
class VendPending:
    """``d,STATUS,VEND``: a vend request is open; the reader asks the customer for a card."""


@dataclass(frozen=True)
class VendApproved:
    """``d,STATUS,RESULT,1,1.20``: the reader approved this amount; a session is now open."""

    amount_cents: int


@dataclass(frozen=True)
class VendDenied:
    """``d,STATUS,RESULT,-1``: denied, cancelled by the customer, or timed out at the reader."""


@dataclass(frozen=True)
class SessionCredit:
    """``d,STATUS,CREDIT,...``: a card started a session (authorisation-first mode only)."""


@dataclass(frozen=True)
class InterfaceError:
    """``d,ERR,...``: the interface refused the last command (``-1``: not applicable now)."""

    detail: str


@dataclass(frozen=True)
class Unrecognised:
    """A line that is not part of the protocol, and why."""

    line: str
    why: str


InterfaceMessage: TypeAlias = (
    Version
    | ReaderReset
    | ReaderInit
    | ReaderIdle
    | VendPending
    | VendApproved
    | VendDenied
    | SessionCredit
    | InterfaceError
    | Unrecognised
)


def parse_line(line: str) -> InterfaceMessage:
    """Parse one line from the interface (without its newline). Never raises."""
    text = line.rstrip("\r\n")
    if not text:
        return Unrecognised(text, "empty line")
    if not (text.isascii() and text.isprintable()):
        return Unrecognised(text, "not printable ASCII")
    if text.startswith("v,"):
        if len(text) == 2:
            return Unrecognised(text, "version line without a version")
        return Version(redact(text[2:]))
    fields = text.split(",")
    if fields[0] != "d":
        return Unrecognised(text, "not a cashless master answer (d,...) or version (v,...)")
    if "#" in fields:
        fields = fields[: fields.index("#")]
    return _parse_fields(text, fields[1:])


def _parse_fields(text: str, fields: list[str]) -> InterfaceMessage:
    match fields:
        case ["STATUS", "RESET"]:
            return ReaderReset()
        case ["STATUS", "INIT", ("0" | "1") as flag]:
            return ReaderInit(always_idle=flag == "1")
        case ["STATUS", "IDLE"]:
            return ReaderIdle()
        case ["STATUS", "VEND"]:
            return VendPending()
        case ["STATUS", "RESULT", "1", amount]:
            cents = parse_amount(amount)
            if cents is None:
                return Unrecognised(text, f"approved amount {amount!r} is not money")
            return VendApproved(cents)
        case ["STATUS", "RESULT", "-1"]:
            return VendDenied()
        case ["STATUS", "CREDIT", *_]:
            return SessionCredit()
        case ["ERR", *detail]:
            # Free text ends up in error messages and health details: never card-like digits.
            return InterfaceError(redact(",".join(detail).strip('"')))
        case _:
            return Unrecognised(text, "unknown or malformed d-line")


# --- bytes to lines ---------------------------------------------------------------------------


class LineSplitter:
    """Cuts received chunks into lines. A line longer than ``max_length`` is discarded whole (and
    counted in :attr:`overlong`), so garbage without newlines can neither grow memory nor pass
    for a shorter valid line.
    """

    def __init__(self, max_length: int = 256) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._discarding = False
        #: How many lines were too long and discarded, for the driver to report.
        self.overlong = 0

    def reset(self) -> None:
        self._buffer.clear()
        self._discarding = False

    def feed(self, chunk: bytes) -> list[str]:
        """Return the lines this chunk completes; keep the unfinished rest for the next chunk."""
        lines: list[str] = []
        *complete, tail = chunk.split(b"\n")
        for piece in complete:
            self._add(piece)
            if not self._discarding:
                lines.append(_decode(bytes(self._buffer)))
            self.reset()
        self._add(tail)
        return lines

    def _add(self, piece: bytes) -> None:
        if self._discarding:
            return
        self._buffer += piece
        if len(self._buffer) > self.max_length:
            self.overlong += 1
            self._buffer.clear()
            self._discarding = True


def _decode(raw: bytes) -> str:
    # Undecodable bytes become U+FFFD, which parse_line then rejects as not ASCII.
    return raw.rstrip(b"\r").decode("ascii", errors="replace")


# --- logging without card data ----------------------------------------------------------------

#: 12 or more digits, possibly grouped by spaces or dashes: anything that could be a card number.
_CARD_LIKE = re.compile(r"[0-9](?:[ -]?[0-9]){11,}")


def redact(text: str) -> str:
    """Mask every run of 12+ digits (a possible card number) before text reaches a log."""
    return _CARD_LIKE.sub("<redacted>", text)


def loggable(line: str, limit: int = 120) -> str:
    """A received line made safe for a log: card-like digits masked, control bytes escaped."""
    safe = redact(line)
    if not (safe.isascii() and safe.isprintable()):
        safe = ascii(safe)[1:-1]
    return safe if len(safe) <= limit else f"{safe[:limit]}..."

"""The EVA-DTS audit report in DEX/UCS form, built from plain numbers: no database, no clock.

Vending-management software reads a machine's sales from this format. A report is one
transmission of one transaction set; each line is a *segment*: an identifier, then ``*``
separated elements, ended by CR LF. Elements left empty at the end of a segment are left out.

    DXS*KIOSK01234*VA*V0/6*1         transmission header: sender, "VA" audit data, version, no.
    ST*001*0001                      transaction set header
    ID1*KIOSK0123456789AB*KIOSK      machine: serial number, model
    ID4*2*978*EUR                    decimal places of every amount, currency (ISO 4217)
    VA1*530*4*410*3                  paid vends: value, count since initialisation; since reset
    VA2*120*1*0*0                    test vends: value, count; since reset
    PA1*A1*120*1                     per slot: selection, price, product id
    PA2*2*240*1*120                  ...paid vends: count, value; since reset
    PA3*1*120*0*0                    ...test vends: count, value; since reset
    EA1*ELA_B1*260314*0915           an event: id, date YYMMDD, time HHMM
    EA2*ELA_B1*1*2**1                ...its count since reset, since initialisation; active now
    EA3*2*260315*1030**260305*0700   resets; this read (date, time); the last reset (date, time)
    G85*6D7C                         CRC of the set
    SE*22*0001                       segments in the set, ST and SE included
    DXE*1*1                          transmission trailer: number, sets in it

(an excerpt of the report of the example in ``tests/maintenance/test_dex.py``).

Money is in the currency's minor unit (cents), as ``ID4``'s two decimal places say.
**Initialisation** is the start of the kiosk's database; a **reset** is a technician's
"reset the audit counters" (recorded in the audit log), and the ``since reset`` elements count
from the last one (from initialisation if there was none).

Events use the codes a snack machine controller's firmware writes (EVA-DTS's own event table
was not at hand to check against), with the selection appended: ``ELA_<slot>`` a failed vend
at that selection (the spiral jammed or its motor did not turn), ``EJL_<slot>`` a product not
seen to drop. ``G85`` is the CRC-16 (polynomial 0x8005 reflected,
initial value 0, the "CRC-16/ARC" of the CRC catalogues) of every byte from the ``S`` of ``ST``
up to and including the CR LF before ``G85``, in four upper-case hex digits; this was checked
against a vending machine's published DEX file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

#: Sent in DXS and DXE; one report is one transmission.
TRANSMISSION = "1"
#: The EVA-DTS version the report claims (DXS03): the widely read 6.x "V0/6".
VERSION = "V0/6"
#: The machine model in ID1.
MODEL = "KIOSK"

#: ISO 4217 numeric codes for the currencies a kiosk is likely to use (ID402).
CURRENCY_NUMBERS = {
    "EUR": "978", "USD": "840", "GBP": "826", "CHF": "756", "SEK": "752", "NOK": "578",
    "DKK": "208", "PLN": "985", "CZK": "203", "HUF": "348", "CAD": "124", "AUD": "036",
    "NZD": "554", "JPY": "392",
}

#: A vend outcome that is an event for the operator, and its event code (before ``_slot``).
EVENT_CODES = {
    "jammed": "ELA",
    "motor_missing": "ELA",
    "not_dropped": "EJL",
}

CRLF = "\r\n"


@dataclass(frozen=True)
class Tally:
    """How many, and what they were worth in cents."""

    count: int = 0
    value_cents: int = 0


@dataclass(frozen=True)
class SlotAudit:
    code: str
    product_id: int | None
    price_cents: int
    paid: Tally = Tally()
    paid_since_reset: Tally = Tally()
    test: Tally = Tally()
    test_since_reset: Tally = Tally()
    #: The slot is out of sale for a fault now (its events are "active").
    fault: bool = False


@dataclass(frozen=True)
class VendEvent:
    """A vend (a sale's or a test's) that went wrong, when, at which slot, how."""

    at: datetime
    slot: str
    outcome: str

    @property
    def code(self) -> str:
        return f"{EVENT_CODES[self.outcome]}_{self.slot}"


@dataclass(frozen=True)
class AuditData:
    """Everything the report says, gathered by the caller."""

    machine_id: str
    currency: str
    read_at: datetime
    paid: Tally
    paid_since_reset: Tally
    test: Tally
    test_since_reset: Tally
    slots: Sequence[SlotAudit]
    #: Every vend event since initialisation, oldest first.
    events: Sequence[VendEvent] = ()
    last_reset_at: datetime | None = None
    resets: int = 0
    #: At most this many EA1 segments per event code (the latest); EA2 still counts them all.
    events_per_code: int = 20


def build_report(data: AuditData, tz: tzinfo = UTC) -> str:
    """The DEX text of ``data``, dates and times in ``tz``, every line ended by CR LF."""
    sender = data.machine_id[:10]
    body = [
        segment("ST", "001", "0001"),
        segment("ID1", data.machine_id[:20], MODEL),
        segment("ID4", "2", CURRENCY_NUMBERS.get(data.currency, ""), data.currency),
        segment("VA1", *_tally_pair(data.paid, data.paid_since_reset, value_first=True)),
        segment("VA2", *_tally_pair(data.test, data.test_since_reset, value_first=True)),
    ]
    for slot in data.slots:
        body += [
            segment("PA1", slot.code, slot.price_cents,
                    slot.product_id if slot.product_id is not None else ""),
            segment("PA2", *_tally_pair(slot.paid, slot.paid_since_reset, value_first=False)),
            segment("PA3", *_tally_pair(slot.test, slot.test_since_reset, value_first=False)),
        ]
    body += _event_segments(data, tz)
    read = data.read_at.astimezone(tz)
    last = data.last_reset_at.astimezone(tz) if data.last_reset_at else None
    body.append(segment("EA3", data.resets, _date(read), _time(read), "",
                        _date(last) if last else "", _time(last) if last else ""))
    body.append(segment("G85", crc16(CRLF.join(body) + CRLF)))
    body.append(segment("SE", len(body) + 1, "0001"))
    lines = [segment("DXS", sender, "VA", VERSION, TRANSMISSION), *body,
             segment("DXE", TRANSMISSION, "1")]
    return CRLF.join(lines) + CRLF


def segment(identifier: str, *elements: object) -> str:
    """One segment: ``identifier*e1*e2...``, empty elements at the end left out."""
    texts = [str(element) for element in elements]
    while texts and texts[-1] == "":
        texts.pop()
    for text in texts:
        if any(char in text for char in "*\r\n") or not text.isascii():
            raise ValueError(f"{text!r} cannot be a DEX element: ASCII without * or line breaks")
    return "*".join((identifier, *texts))


def crc16(text: str) -> str:
    """The G85 check value of ``text``: CRC-16/ARC as four upper-case hex digits."""
    crc = 0
    for byte in text.encode("ascii"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return f"{crc:04X}"


def _tally_pair(init: Tally, reset: Tally, *, value_first: bool) -> tuple[int, ...]:
    # VA segments put the value first, PA segments the count: as the standard lays them out.
    if value_first:
        return init.value_cents, init.count, reset.value_cents, reset.count
    return init.count, init.value_cents, reset.count, reset.value_cents


def _event_segments(data: AuditData, tz: tzinfo) -> list[str]:
    faulty = {slot.code for slot in data.slots if slot.fault}
    by_code: dict[str, list[VendEvent]] = {}
    for event in sorted(data.events, key=lambda e: e.at):
        by_code.setdefault(event.code, []).append(event)
    segments: list[str] = []
    for code, events in sorted(by_code.items()):
        for event in events[-data.events_per_code:]:
            at = event.at.astimezone(tz)
            segments.append(segment("EA1", code, _date(at), _time(at)))
        since_reset = _since(events, data.last_reset_at)
        active = 1 if events[-1].slot in faulty else 0
        segments.append(segment("EA2", code, len(since_reset), len(events), "", active))
    return segments


def _since(events: Iterable[VendEvent], moment: datetime | None) -> list[VendEvent]:
    return [event for event in events if moment is None or event.at >= moment]


def _date(at: datetime) -> str:
    return at.strftime("%y%m%d")


def _time(at: datetime) -> str:
    return at.strftime("%H%M")

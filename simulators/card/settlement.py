"""The payment provider's side of the simulated card reader: every vend request and its fate."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum


class Settlement(StrEnum):
    """Where a vend request stands with the payment provider."""

    PENDING = "pending"  # the reader is asking for a card
    OPEN = "open"  # approved, neither captured nor reverted: money held
    CAPTURED = "captured"
    REVERTED = "reverted"
    DECLINED = "declined"
    CANCELLED = "cancelled"  # by the customer, at the reader
    ABANDONED = "abandoned"  # the machine cancelled the request, or went away before a result
    TIMED_OUT = "timed_out"  # nobody presented a card before the reader's own timeout


#: Where a request can still change; every other status is final.
UNSETTLED = frozenset({Settlement.PENDING, Settlement.OPEN})

#: Requests a report lists one by one, the latest. Older finished ones count only in its totals,
#: so a simulator serving a kiosk for weeks does not carry every request it ever saw.
LISTED = 1000


@dataclass(slots=True)
class Transaction:
    """One vend request as the payment provider sees it. ``reference`` is the provider's own."""

    sequence: int
    reference: str
    item: int
    requested_cents: int
    authorized_cents: int = 0
    status: Settlement = Settlement.PENDING
    note: str = ""


@dataclass
class Tally:
    """Finished requests summed up: how many, and the cents authorised, by status; how many
    were captured for each item (the machine's item number)."""

    counts: Counter[Settlement] = field(default_factory=Counter)
    cents: Counter[Settlement] = field(default_factory=Counter)
    captured_by_item: Counter[int] = field(default_factory=Counter)

    def add(self, txn: Transaction) -> None:
        self.counts[txn.status] += 1
        self.cents[txn.status] += txn.authorized_cents
        if txn.status is Settlement.CAPTURED:
            self.captured_by_item[txn.item] += 1

    def copy(self) -> Tally:
        return Tally(Counter(self.counts), Counter(self.cents), Counter(self.captured_by_item))


@dataclass(frozen=True)
class SettlementReport:
    """The latest vend requests one by one, with the provider's totals over every request so
    far (``earlier``: those no longer listed). Nothing is charged unless captured."""

    transactions: tuple[Transaction, ...]
    earlier: Tally = field(default_factory=Tally)

    def _sum(self, status: Settlement) -> int:
        return self.earlier.cents[status] + sum(
            t.authorized_cents for t in self.transactions if t.status is status)

    @property
    def authorizations(self) -> tuple[Transaction, ...]:
        """The listed requests the reader approved (whatever became of them)."""
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
        return self.count(Settlement.OPEN)

    @property
    def pending_requests(self) -> int:
        return self.count(Settlement.PENDING)

    @property
    def left_out(self) -> int:
        """Finished requests too old to be listed (they are in every total)."""
        return sum(self.earlier.counts.values())

    def count(self, status: Settlement) -> int:
        return self.earlier.counts[status] + sum(t.status is status for t in self.transactions)

    def captured_by_item(self) -> dict[int, int]:
        """How many requests were captured for each item, over every request so far."""
        captured = Counter(self.earlier.captured_by_item)
        captured.update(t.item for t in self.transactions if t.status is Settlement.CAPTURED)
        return dict(sorted(captured.items()))

    def to_dict(self) -> dict[str, object]:
        return {
            "transactions": [{**asdict(t), "status": t.status.value} for t in self.transactions],
            "left_out": self.left_out,
            "totals": {
                "captured_cents": self.captured_cents,
                "reverted_cents": self.reverted_cents,
                "open_cents": self.open_cents,
                "open_sessions": self.open_sessions,
                "pending_requests": self.pending_requests,
                **{f"{status}_count": self.count(status) for status in Settlement},
            },
            # JSON keys are strings: the item numbers as text.
            "captured_by_item": {str(item): n for item, n in self.captured_by_item().items()},
        }


class SettlementBook:
    """The provider's running record: the latest ``listed`` requests one by one, the finished
    ones before them only as a :class:`Tally`, so totals stay exact in bounded memory."""

    def __init__(self, listed: int = LISTED) -> None:
        if listed < 1:
            raise ValueError(f"a settlement book lists at least one request, not {listed}")
        self.listed = listed
        #: Every vend request so far; the next one's sequence number follows it.
        self.requests = 0
        self._recent: deque[Transaction] = deque()
        self._earlier = Tally()

    def request(self, item: int, requested_cents: int) -> Transaction:
        """Record a new vend request, pending; the caller updates it as it goes on."""
        self.requests += 1
        txn = Transaction(self.requests, f"SIM-{self.requests:06d}", item, requested_cents)
        self._recent.append(txn)
        self._fold()
        return txn

    def report(self) -> SettlementReport:
        """A copy: later changes to the requests do not reach it."""
        self._fold()
        return SettlementReport(tuple(replace(t) for t in self._recent), self._earlier.copy())

    def _fold(self) -> None:
        # Only a finished request leaves the list: one still pending or open may yet change.
        while len(self._recent) > self.listed and self._recent[0].status not in UNSETTLED:
            self._earlier.add(self._recent.popleft())

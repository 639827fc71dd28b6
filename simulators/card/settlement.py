"""The payment provider's side of the simulated card reader: every vend request and its fate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

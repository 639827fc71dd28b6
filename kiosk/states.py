"""The sale state machine: one table of every legal move, and nothing else.

```
created -> authorizing -> authorized -> dispensing -> dispensed -> completed
              |               |             |
              v               v             v
           declined        voided     dispense_failed -> voided
           cancelled                                  -> needs_review (void not confirmed)
```
A terminal sale never moves again, whatever a device or a person says later.
"""

from __future__ import annotations

from enum import StrEnum


class SaleState(StrEnum):
    CREATED = "created"
    AUTHORIZING = "authorizing"
    AUTHORIZED = "authorized"
    DISPENSING = "dispensing"
    DISPENSED = "dispensed"
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    DISPENSE_FAILED = "dispense_failed"
    VOIDED = "voided"
    NEEDS_REVIEW = "needs_review"


class PaymentMethod(StrEnum):
    CARD = "card"
    ACCOUNT = "account"


S = SaleState

TRANSITIONS: dict[SaleState, frozenset[SaleState]] = {
    S.CREATED: frozenset({S.AUTHORIZING, S.CANCELLED}),
    S.AUTHORIZING: frozenset({S.AUTHORIZED, S.DECLINED, S.CANCELLED}),
    # Cancelled after approval, or found so by recovery: the payment is voided, or, if the
    # reader cannot confirm the void, a technician must look.
    S.AUTHORIZED: frozenset({S.DISPENSING, S.VOIDED, S.NEEDS_REVIEW}),
    # needs_review straight from dispensing: the outcome of the vend is unknown (a crash, a
    # mechanism that stopped answering), so the payment is voided and the slot checked.
    S.DISPENSING: frozenset({S.DISPENSED, S.DISPENSE_FAILED, S.NEEDS_REVIEW}),
    S.DISPENSED: frozenset({S.COMPLETED, S.NEEDS_REVIEW}),
    S.DISPENSE_FAILED: frozenset({S.VOIDED, S.NEEDS_REVIEW}),
    S.COMPLETED: frozenset(),
    S.DECLINED: frozenset(),
    S.CANCELLED: frozenset(),
    S.VOIDED: frozenset(),
    S.NEEDS_REVIEW: frozenset(),
}

TERMINAL: frozenset[SaleState] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
OPEN: frozenset[SaleState] = frozenset(SaleState) - TERMINAL


def can_move(current: SaleState, target: SaleState) -> bool:
    return target in TRANSITIONS[current]

"""What a customer sees of a sale: its state in words, and what to do next."""

from __future__ import annotations

from typing import Any

from kiosk.models import Sale
from kiosk.states import TERMINAL, PaymentMethod, SaleState
from kiosk.states import SaleState as S

#: What the customer should do or know, by state: the touchscreen shows it.
INSTRUCTIONS: dict[tuple[SaleState, PaymentMethod | None], str] = {
    (S.AUTHORIZING, PaymentMethod.CARD): "present your card",
    (S.AUTHORIZING, PaymentMethod.ACCOUNT): "place your finger",
    (S.AUTHORIZED, None): "payment accepted",
    (S.DISPENSING, None): "dispensing",
    (S.DISPENSED, None): "take your product",
    (S.COMPLETED, None): "take your product",
    (S.DISPENSE_FAILED, None): "not delivered: refunding",
    (S.VOIDED, PaymentMethod.CARD): "not delivered: you were not charged",
    (S.VOIDED, PaymentMethod.ACCOUNT): "not delivered: your balance was credited back",
    (S.NEEDS_REVIEW, None): "please ask staff: this sale is being reviewed",
    (S.DECLINED, None): "payment declined",
    (S.CANCELLED, None): "cancelled",
}

def instruction(sale: Sale) -> str:
    state, method = SaleState(sale.state), PaymentMethod(sale.method)
    return INSTRUCTIONS.get((state, method)) or INSTRUCTIONS.get((state, None), "")


def sale_view(sale: Sale) -> dict[str, Any]:
    """A sale as the customer screen and the event stream see it."""
    return {
        "id": sale.id,
        "slot": sale.slot_code,
        "product": sale.product_name,
        "price_cents": sale.price_cents,
        "method": str(sale.method),
        "state": str(sale.state),
        "terminal": SaleState(sale.state) in TERMINAL,
        "reason": sale.reason,
        "instruction": instruction(sale),
        "created_at": sale.created_at.isoformat(),
        "updated_at": sale.updated_at.isoformat(),
    }

"""Settling a payment after the vend: capture it, or give the money back.

Shared by the sale engine (a sale that just ended) and recovery (a sale a crash left behind),
so both follow one rule: never charge for a product the drop beam did not see fall.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.base import Authorization, AuthorizationOutcome, CardReader, DeviceError
from kiosk.models import Sale
from kiosk.states import PaymentMethod

log = logging.getLogger(__name__)


def card_authorization(sale: Sale) -> Authorization:
    """The reader's approval as the ledger remembers it: amount and opaque reference."""
    return Authorization(AuthorizationOutcome.APPROVED, sale.price_cents, sale.reader_reference)


async def capture(card: CardReader | None, sale: Sale, timeout: float) -> str:
    """Charge a delivered card sale; returns "" when the reader confirmed, else the problem."""
    if sale.method != PaymentMethod.CARD:
        return ""
    return await _at_reader(card, sale, timeout, capture=True)


async def void(card: CardReader | None, sale: Sale, timeout: float) -> str:
    """Revert a card sale's authorization; returns "" when confirmed, else the problem.

    Account sales are credited back by the ledger in the same transaction as their state.
    """
    if sale.method != PaymentMethod.CARD:
        return ""
    return await _at_reader(card, sale, timeout, capture=False)


async def _at_reader(card: CardReader | None, sale: Sale, timeout: float, capture: bool) -> str:
    what = "capture" if capture else "void"
    if card is None:
        return f"card reader unavailable, {what} not confirmed"
    authorization = card_authorization(sale)
    try:
        async with asyncio.timeout(timeout):
            if capture:
                await card.capture(authorization)
            else:
                await card.void(authorization)
    except TimeoutError:
        problem = f"card reader did not confirm the {what} within {timeout:g} s"
    except DeviceError as exc:
        problem = f"card reader did not confirm the {what}: {exc.message}"
    else:
        return ""
    log.warning("sale %s: %s", sale.id, problem)
    return problem

"""Start-up reconciliation: every sale a crash or power cut left unfinished is brought to an end.

| found in             | action                                       | ends in                   |
|----------------------|----------------------------------------------|---------------------------|
| created, authorizing | cancel the request at the reader             | cancelled                 |
| authorized           | void the payment                             | voided (or needs_review)  |
| dispensing           | outcome unknown: void, flag the slot         | needs_review              |
| dispensed            | product delivered: capture if the reader can | completed or needs_review |
| dispense_failed      | void the payment                             | voided (or needs_review)  |

Never charge for a product not seen to drop, never leave a session open on the reader, and
say so whenever the kiosk cannot be sure. Each step is a sale_event and an audit entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from drivers.base import CardReader, DeviceError
from kiosk import settlement
from kiosk.ledger import Effect, Ledger, NotRecorded, both, credit_back, flag_slot
from kiosk.models import Sale
from kiosk.states import PaymentMethod, SaleState
from kiosk.states import SaleState as S

log = logging.getLogger(__name__)

ACTOR = "recovery"
#: What interrupted the sales recovery settles at start-up.
RESTART = "a restart"


@dataclass(frozen=True)
class Recovered:
    sale_id: str
    found: SaleState
    ended: SaleState
    reason: str


async def recover(
    ledger: Ledger, card: CardReader | None, settle_timeout: float, cause: str = RESTART
) -> list[Recovered]:
    """Bring every unfinished sale to a terminal state; returns what was done, oldest first.

    ``cause`` is what interrupted them, for the reasons a technician reads. Raises
    :class:`NotRecorded` when the database refuses the writes: the kiosk must then stay out
    of service and try again later.
    """
    return [await settle(ledger, card, sale, settle_timeout, cause=cause)
            for sale in await ledger.scribe(ledger.unfinished)]


async def settle(
    ledger: Ledger, card: CardReader | None, sale: Sale, settle_timeout: float,
    actor: str = ACTOR, cause: str = RESTART,
) -> Recovered:
    """End one unfinished sale as the table says (also used for a sale whose drive broke)."""
    found = SaleState(sale.state)
    try:
        ended, reason = await _settle(ledger, card, sale, found, settle_timeout, cause)
    except NotRecorded:
        raise
    except Exception as exc:  # a device raising the unexpected must not strand the sale
        log.exception("settling sale %s from %s failed", sale.id, found)
        reason = f"could not be settled automatically ({exc}); check the payment and the slot"
        try:
            await ledger.scribe(ledger.move, sale.id, S.NEEDS_REVIEW,
                                {"recovered_from": found.value}, reason=reason)
        except NotRecorded:
            raise
        except Exception as again:
            # The ledger itself refuses (a constraint, a corrupt page): like a full disk, the
            # kiosk must stay out of service and try again, not fail to start.
            raise NotRecorded(f"sale {sale.id} could not be recorded: {again}") from again
        ended = S.NEEDS_REVIEW
    await ledger.scribe(ledger.audit, actor, "recover_sale", sale.id,
                        before={"state": found.value},
                        after={"state": ended.value, "reason": reason})
    log.warning("settled sale %s: %s -> %s (%s)", sale.id, found, ended, reason)
    return Recovered(sale.id, found, ended, reason)


async def _settle(
    ledger: Ledger, card: CardReader | None, sale: Sale, found: SaleState, timeout: float,
    cause: str,
) -> tuple[SaleState, str]:
    detail = {"recovered_from": found.value}
    if found in (S.CREATED, S.AUTHORIZING):
        note = await _cancel_at_reader(card, sale, timeout)
        reason = f"interrupted by {cause} before payment" + (f"; {note}" if note else "")
        await ledger.scribe(ledger.move, sale.id, S.CANCELLED, detail, reason=reason)
        return S.CANCELLED, reason
    if found in (S.AUTHORIZED, S.DISPENSE_FAILED):
        why = f"interrupted by {cause} before the vend"
        if found is S.DISPENSE_FAILED:
            why = f"not delivered ({sale.reason or 'vend failed'})"
        return await _give_back(ledger, card, sale, detail, why, S.VOIDED, None, timeout)
    if found is S.DISPENSING:
        why = f"interrupted by {cause} during the vend: outcome unknown, check the slot's stock"
        return await _give_back(ledger, card, sale, detail, why, S.NEEDS_REVIEW,
                                flag_slot("a vend was interrupted: check stock"), timeout)
    # dispensed: the beam saw the product fall, so the customer has it and owes for it.
    problem = await settlement.capture(card, sale, timeout)
    if problem:
        reason = f"product delivered before {cause}; {problem}"
        await ledger.scribe(ledger.move, sale.id, S.NEEDS_REVIEW, detail, reason=reason)
        return S.NEEDS_REVIEW, reason
    reason = f"completed after {cause}"
    await ledger.scribe(ledger.move, sale.id, S.COMPLETED, detail, reason=reason)
    return S.COMPLETED, reason


async def _give_back(
    ledger: Ledger,
    card: CardReader | None,
    sale: Sale,
    detail: dict[str, str],
    why: str,
    done: SaleState,
    effect: Effect | None,
    timeout: float,
) -> tuple[SaleState, str]:
    problem = await settlement.void(card, sale, timeout)
    if problem:
        reason = f"{why}; {problem}"
        await ledger.scribe(ledger.move, sale.id, S.NEEDS_REVIEW, detail, reason=reason,
                            effect=effect)
        return S.NEEDS_REVIEW, reason
    returned = "payment reverted" if sale.method == PaymentMethod.CARD else "balance credited back"
    reason = f"{why}; {returned}"
    await ledger.scribe(ledger.move, sale.id, done, detail, reason=reason,
                        effect=both(effect, credit_back))
    return done, reason


async def _cancel_at_reader(card: CardReader | None, sale: Sale, timeout: float) -> str:
    """Close any vend request the crash left open; returns a note when that was not possible."""
    if sale.method != PaymentMethod.CARD:
        return ""
    if card is None:
        return "card reader unavailable, its request expires by itself"
    with contextlib.suppress(DeviceError, TimeoutError):
        async with asyncio.timeout(timeout):
            await card.cancel()
        return ""
    return "the card reader did not confirm the cancel"

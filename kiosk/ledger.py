"""The durable record of sales: every transition committed, with its event, before it returns.

Each write is one SQLite transaction holding the state change, its ``sale_event`` row and any
money or stock that moves with it (a debit, a credit back, a product gone from a slot), so a
power cut can never leave the sale saying one thing and the account or the stock another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from kiosk.db import Database
from kiosk.models import AccountEntry, AuditLog, Member, Product, Sale, SaleEvent, Slot, utcnow
from kiosk.states import OPEN, PaymentMethod, SaleState, can_move

log = logging.getLogger(__name__)

Effect = Callable[[Session, Sale], None]


class LedgerError(Exception):
    """A sale could not be recorded; the message is for the customer screen and the log."""

    code = "ledger_error"


class SaleBusy(LedgerError):
    code = "busy"


class SlotUnavailable(LedgerError):
    code = "slot_unavailable"


class SaleNotFound(LedgerError):
    code = "not_found"


class IllegalTransition(LedgerError):
    code = "illegal_transition"


class NotRecorded(LedgerError):
    """The database refused the write: the kiosk must not act as if it had been recorded."""

    code = "not_recorded"


class Ledger:
    """Reads and durable writes of sales, accounts and the audit log."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sales -------------------------------------------------------------------------------

    def open_sale(self, slot_code: str, method: PaymentMethod) -> Sale:
        """Record a new sale for ``slot_code``, or refuse: slot not for sale, or a sale running."""
        with self.db.session() as session:
            slot = session.exec(select(Slot).where(Slot.code == slot_code)).first()
            if slot is None:
                raise SlotUnavailable(f"there is no slot {slot_code}")
            product = session.get(Product, slot.product_id) if slot.product_id else None
            if product is None or product.retired or not slot.enabled or slot.fault:
                raise SlotUnavailable(f"slot {slot_code} is not for sale")
            if slot.stock <= 0:
                raise SlotUnavailable(f"slot {slot_code} is sold out")
            sale = Sale(
                slot_code=slot.code,
                product_name=product.name,
                price_cents=slot.price_cents,
                method=method,
            )
            session.add(sale)
            session.add(SaleEvent(sale_id=sale.id, to_state=SaleState.CREATED,
                                  detail={"slot": slot.code, "method": method.value}))
            try:
                self.commit(session)
            except IntegrityError:
                # The one-open-sale index: another sale is running (perhaps another process).
                raise SaleBusy("another sale is in progress") from None
            return sale

    def move(
        self,
        sale_id: str,
        target: SaleState,
        detail: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
        effect: Effect | None = None,
    ) -> tuple[Sale, bool]:
        """Move a sale to ``target`` durably; returns the sale and whether it moved.

        Asking for the state the sale is already in changes nothing (a repeated command or a
        duplicate device event). Any move the state table does not allow raises
        :class:`IllegalTransition` and changes nothing: a terminal sale never moves.
        ``effect`` runs in the same transaction (money, stock) before the commit.
        """
        with self.db.session() as session:
            sale = session.get(Sale, sale_id)
            if sale is None:
                raise SaleNotFound(f"no sale {sale_id}")
            current = SaleState(sale.state)
            if current is target:
                return sale, False
            if not can_move(current, target):
                raise IllegalTransition(f"sale {sale_id} cannot go from {current} to {target}")
            sale.state = target
            sale.updated_at = utcnow()
            if reason is not None:
                sale.reason = reason
            if effect is not None:
                effect(session, sale)
            session.add(sale)
            session.add(SaleEvent(sale_id=sale.id, from_state=current, to_state=target,
                                  detail=detail or {}))
            self.commit(session)
            log.info("sale %s %s -> %s %s", sale.id, current, target, detail or "")
            return sale, True

    def get(self, sale_id: str) -> Sale:
        with self.db.session() as session:
            sale = session.get(Sale, sale_id)
            if sale is None:
                raise SaleNotFound(f"no sale {sale_id}")
            return sale

    def history(self, sale_id: str) -> Sequence[SaleEvent]:
        with self.db.session() as session:
            return session.exec(
                select(SaleEvent).where(SaleEvent.sale_id == sale_id).order_by(col(SaleEvent.id))
            ).all()

    def sales_since(self, since: datetime | None) -> Sequence[Sale]:
        """Every sale created at or after ``since`` (all with None), oldest first."""
        with self.db.session() as session:
            query = select(Sale).order_by(col(Sale.created_at))
            if since is not None:
                query = query.where(col(Sale.created_at) >= since)
            return session.exec(query).all()

    def unfinished(self) -> Sequence[Sale]:
        with self.db.session() as session:
            return session.exec(
                select(Sale).where(col(Sale.state).in_([s.value for s in OPEN]))
                .order_by(col(Sale.created_at))
            ).all()

    def slot(self, code: str) -> Slot | None:
        with self.db.session() as session:
            return session.exec(select(Slot).where(Slot.code == code)).first()

    # --- members ----------------------------------------------------------------------------

    def member_by_page(self, page: int) -> Member | None:
        with self.db.session() as session:
            return session.exec(select(Member).where(Member.fingerprint_page == page)).first()

    def balance(self, member_id: int) -> int:
        with self.db.session() as session:
            return balance_of(session, member_id)

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        with self.db.session() as session:
            session.add(AuditLog(actor=actor, action=action, target=target,
                                 before=before, after=after))
            self.commit(session)

    def commit(self, session: Session) -> None:
        """Commit durably, or raise :class:`NotRecorded` (a 503) and note the failing disk."""
        try:
            session.commit()
        except OperationalError as exc:
            session.rollback()
            self.db.note_write_failure(exc)
            raise NotRecorded(f"the change could not be recorded: {exc.orig}") from exc
        self.db.write_error = ""


# --- effects that move with a transition ----------------------------------------------------


def balance_of(session: Session, member_id: int) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(AccountEntry.amount_cents), 0)).where(
            AccountEntry.member_id == member_id
        )
    ).one()
    return int(total)


def debit(member_id: int) -> Effect:
    """Take the sale's price from the member's balance."""

    def apply(session: Session, sale: Sale) -> None:
        sale.member_id = member_id
        session.add(AccountEntry(member_id=member_id, amount_cents=-sale.price_cents,
                                 reason=f"sale {sale.slot_code} {sale.product_name}",
                                 sale_id=sale.id))

    return apply


def credit_back(session: Session, sale: Sale) -> None:
    """Return an account sale's debit, once, whatever asks for it again."""
    if sale.method != PaymentMethod.ACCOUNT or sale.member_id is None:
        return
    net = session.exec(
        select(func.coalesce(func.sum(AccountEntry.amount_cents), 0)).where(
            AccountEntry.sale_id == sale.id
        )
    ).one()
    if int(net) < 0:
        session.add(AccountEntry(member_id=sale.member_id, amount_cents=-int(net),
                                 reason=f"credit back: sale {sale.slot_code} not delivered",
                                 sale_id=sale.id))


def product_left_slot(session: Session, sale: Sale) -> None:
    """The drop beam saw the product fall: one fewer in the slot."""
    slot = session.exec(select(Slot).where(Slot.code == sale.slot_code)).first()
    if slot is not None and slot.stock > 0:
        slot.stock -= 1
        session.add(slot)


def flag_slot(fault: str) -> Effect:
    """Take the sale's slot out of sale until a technician has looked at it."""

    def apply(session: Session, sale: Sale) -> None:
        slot = session.exec(select(Slot).where(Slot.code == sale.slot_code)).first()
        if slot is not None:
            slot.fault = fault[:200]
            session.add(slot)

    return apply


def both(*effects: Effect | None) -> Effect:
    def apply(session: Session, sale: Sale) -> None:
        for effect in effects:
            if effect is not None:
                effect(session, sale)

    return apply

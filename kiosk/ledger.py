"""The durable record of sales: every transition committed, with its event, before it returns.

Each write is one SQLite transaction holding the state change, its ``sale_event`` row and any
money or stock that moves with it (a debit, a credit back, a product gone from a slot), so a
power cut can never leave the sale saying one thing and the account or the stock another.

The sale engine and recovery hand every read and write to the ledger's scribe (see
:mod:`kiosk.scribe`), one thread with a connection of its own, and await it there: the event
loop never waits for the disk. Technician requests call the same methods from their own worker
threads, on the shared pool.

The writes a sale makes on its way (opening it and every transition) are plain SQL on a pooled
connection, not the ORM: a sale is four commits, each before the next physical step, and the
ORM's unit of work cost three times what SQLite itself does for them (see BENCHMARKS.md). What
a technician changes goes through SQLModel sessions, where that cost does not matter.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from kiosk.db import Database, waited_for_lock
from kiosk.models import AccountEntry, AuditLog, Member, Sale, SaleEvent, Slot, utcnow
from kiosk.scribe import Scribe
from kiosk.states import OPEN, PaymentMethod, SaleState, can_move

log = logging.getLogger(__name__)


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


class DatabaseBusy(NotRecorded):
    """A technician's write waited too long for another writer's lock: nothing is broken,
    the request may be tried again (a sale's own step raises NotRecorded instead)."""

    code = "busy"


class Ledger:
    """Reads and durable writes of sales, accounts and the audit log."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: The thread the sale engine's reads and writes run on: ``await ledger.scribe(...)``.
        self.scribe = Scribe()

    def close(self) -> None:
        """Let the scribe finish what it was handed, then end its thread."""
        self.scribe.close()

    def _engine(self) -> Engine:
        """The scribe's own connection on its thread; the shared pool everywhere else."""
        return self.db.ledger_engine if self.scribe.here() else self.db.engine

    def _session(self) -> AbstractContextManager[Session]:
        return self.db.session(self._engine())

    # --- sales -------------------------------------------------------------------------------

    def open_sale(self, slot_code: str, method: PaymentMethod) -> Sale:
        """Record a new sale for ``slot_code`` as created and already authorizing, or refuse:
        slot not for sale, or a sale running.

        Both steps are one commit: nothing happens between them that a crash could separate
        (recovery treats the two alike), and a commit is the largest part of a sale's time.
        The history still shows the sale created, then asking for its payment.
        """
        with self._writing() as write:
            found = write.connection.execute(
                "SELECT slot.price_cents, slot.stock, slot.enabled, slot.fault, product.name, "
                "product.retired FROM slot LEFT JOIN product ON product.id = slot.product_id "
                "WHERE slot.code = ?", (slot_code,)).fetchone()
            if found is None:
                raise SlotUnavailable(f"there is no slot {slot_code}")
            price, stock, enabled, fault, name, retired = found
            if name is None or retired or not enabled or fault:
                raise SlotUnavailable(f"slot {slot_code} is not for sale")
            if stock <= 0:
                raise SlotUnavailable(f"slot {slot_code} is sold out")
            now = utcnow()
            sale = Sale(id=str(uuid.uuid4()), slot_code=slot_code, product_name=name,
                        price_cents=price, method=method, state=SaleState.AUTHORIZING,
                        created_at=now, updated_at=now)
            try:
                write.connection.execute(
                    f"INSERT INTO sale ({', '.join(SALE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(SALE_COLUMNS))})", _sale_row(sale))
            except sqlite3.IntegrityError:
                # The one-open-sale index: another sale is running (perhaps another process).
                raise SaleBusy("another sale is in progress") from None
            opened = {"slot": slot_code, "method": method.value}
            write.event(sale.id, None, SaleState.CREATED, opened, now)
            write.event(sale.id, SaleState.CREATED, SaleState.AUTHORIZING, {}, now)
        log.info("sale %s created -> authorizing %s", sale.id, opened)
        return sale

    def item_number(self, slot_code: str) -> int:
        """The number the card reader is told for the slot's product (the slot's id; 0 if
        there is no such slot). Plain SQL: it is read on the way to every card payment."""
        pooled = self._engine().raw_connection()
        try:
            found = pooled.dbapi_connection.execute(  # type: ignore[union-attr]
                "SELECT id FROM slot WHERE code = ?", (slot_code,)).fetchone()
        finally:
            pooled.close()
        return int(found[0]) if found else 0

    def move(
        self,
        sale_id: str,
        target: SaleState,
        detail: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
        effect: Effect | None = None,
        then: SaleState | None = None,
    ) -> tuple[Sale, bool]:
        """Move a sale to ``target`` durably; returns the sale and whether it moved.

        Asking for the state the sale is already in changes nothing (a repeated command or a
        duplicate device event). Any move the state table does not allow raises
        :class:`IllegalTransition` and changes nothing: a terminal sale never moves.
        ``effect`` runs in the same transaction (money, stock) before the commit. ``then``
        moves on from ``target`` in the same commit, with its own event: for two steps with
        nothing physical between them, which a crash therefore cannot separate anyway.
        """
        with self._writing() as write:
            found = write.connection.execute(SELECT_SALE, (sale_id,)).fetchone()
            if found is None:
                raise SaleNotFound(f"no sale {sale_id}")
            sale = _sale_of(found)
            current = SaleState(sale.state)
            if current is target:
                return sale, False
            path = [(current, target, detail or {})]
            if then is not None:
                path.append((target, then, {}))
            for before, after, _ in path:
                if not can_move(before, after):
                    raise IllegalTransition(f"sale {sale_id} cannot go from {before} to {after}")
            now = utcnow()
            sale.state, sale.updated_at = path[-1][1], now
            if reason is not None:
                sale.reason = reason
            if effect is not None:
                effect(write, sale)
            # Effects may set who paid (a debit) or the reader's reference (an approval).
            write.connection.execute(
                "UPDATE sale SET state = ?, updated_at = ?, reason = ?, member_id = ?, "
                "reader_reference = ? WHERE id = ?",
                (sale.state, _stamp(now), sale.reason, sale.member_id, sale.reader_reference,
                 sale_id))
            for before, after, said in path:
                write.event(sale_id, before, after, said, now)
        log.info("sale %s %s -> %s %s", sale_id, current, " -> ".join(a for _, a, _ in path),
                 detail or "")
        return sale, True

    def get(self, sale_id: str) -> Sale:
        with self._session() as session:
            sale = session.get(Sale, sale_id)
            if sale is None:
                raise SaleNotFound(f"no sale {sale_id}")
            return sale

    def history(self, sale_id: str) -> Sequence[SaleEvent]:
        with self._session() as session:
            return session.exec(
                select(SaleEvent).where(SaleEvent.sale_id == sale_id).order_by(col(SaleEvent.id))
            ).all()

    def sales_since(self, since: datetime | None) -> Sequence[Sale]:
        """Every sale created at or after ``since`` (all with None), oldest first."""
        with self._session() as session:
            query = select(Sale).order_by(col(Sale.created_at))
            if since is not None:
                query = query.where(col(Sale.created_at) >= since)
            return session.exec(query).all()

    def unfinished(self) -> Sequence[Sale]:
        with self._session() as session:
            return session.exec(
                select(Sale).where(col(Sale.state).in_([s.value for s in OPEN]))
                .order_by(col(Sale.created_at))
            ).all()

    def slot(self, code: str) -> Slot | None:
        with self._session() as session:
            return session.exec(select(Slot).where(Slot.code == code)).first()

    # --- members ----------------------------------------------------------------------------

    def member_by_page(self, page: int) -> Member | None:
        with self._session() as session:
            return session.exec(select(Member).where(Member.fingerprint_page == page)).first()

    def balance(self, member_id: int) -> int:
        with self._session() as session:
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
        with self._session() as session:
            session.add(AuditLog(actor=actor, action=action, target=target,
                                 before=before, after=after))
            self.commit(session)

    @contextmanager
    def _writing(self) -> Iterator[Write]:
        """One durable transaction on a pooled connection: committed when the block ends,
        rolled back if it raises (a refusal, an effect's objection, a database error)."""
        pooled = self._engine().raw_connection()
        connection: sqlite3.Connection = pooled.dbapi_connection  # type: ignore[assignment]
        try:
            # IMMEDIATE: take the write lock before reading what the write depends on, so
            # nothing (another process) changes the sale between the check and the update.
            connection.execute("BEGIN IMMEDIATE")
            yield Write(connection)
            self.commit(connection)
        except sqlite3.OperationalError as exc:
            self._refused(exc, connection)
        finally:
            if connection.in_transaction:
                connection.rollback()
            pooled.close()

    def commit(self, work: Session | sqlite3.Connection) -> None:
        """Commit durably, or raise :class:`NotRecorded` (a 503) and note the failing disk."""
        try:
            work.commit()
        except (OperationalError, sqlite3.OperationalError) as exc:
            self._refused(exc, work)
        self.db.write_error = ""

    def _refused(self, exc: Exception, work: Session | sqlite3.Connection) -> None:
        work.rollback()
        if waited_for_lock(exc) and not self.scribe.here():
            raise DatabaseBusy("the kiosk is busy; try again in a moment") from exc
        self.db.note_write_failure(exc)
        cause = getattr(exc, "orig", exc)
        raise NotRecorded(f"the change could not be recorded: {cause}") from exc


#: The sale's columns, in the order the ledger reads and writes them.
SALE_COLUMNS: tuple[str, ...] = tuple(Sale.__table__.columns.keys())  # type: ignore[attr-defined]
SELECT_SALE = f"SELECT {', '.join(SALE_COLUMNS)} FROM sale WHERE id = ?"
#: Columns stored as times (see models.UtcDateTime: UTC, without a zone, as SQLAlchemy writes).
TIMES = frozenset({"created_at", "updated_at", "resolved_at"})


def _stamp(moment: datetime) -> str:
    """A UTC time as SQLAlchemy stores it in SQLite, so that both read and sort alike."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sale_of(row: Sequence[Any]) -> Sale:
    """The sale as the ORM itself builds one it loads: a new instance with the columns put
    straight into its dict. SQLModel's ``__init__`` instead sets each field through attribute
    events, which alone cost a fifth of a transition."""
    values = dict(zip(SALE_COLUMNS, row, strict=True))
    for name in TIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name]).replace(tzinfo=UTC)
    sale: Sale = Sale._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    sale.__dict__.update(values)
    return sale


def _sale_row(sale: Sale) -> tuple[Any, ...]:
    values = []
    for name in SALE_COLUMNS:
        value = getattr(sale, name)
        values.append(_stamp(value) if name in TIMES and value is not None else value)
    return tuple(values)


class Write:
    """What a sale's transition may write besides the sale itself, in the same transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    @classmethod
    def within(cls, session: Session) -> Write:
        """The same writes inside a session's own transaction (a technician's resolution)."""
        connection: Any = session.connection().connection.dbapi_connection
        return cls(connection)

    def event(self, sale_id: str, from_state: SaleState | None, to_state: SaleState,
              detail: dict[str, Any], at: datetime) -> None:
        self.connection.execute(
            "INSERT INTO sale_event (sale_id, from_state, to_state, at, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (sale_id, from_state and from_state.value, to_state.value, _stamp(at),
             json.dumps(detail)))

    def balance(self, member_id: int) -> int:
        (total,) = self.connection.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM account_entry WHERE member_id = ?",
            (member_id,)).fetchone()
        return int(total)

    def net_of_sale(self, sale_id: str) -> int:
        """What the sale has moved on its member's account so far (negative: taken)."""
        (total,) = self.connection.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM account_entry WHERE sale_id = ?",
            (sale_id,)).fetchone()
        return int(total)

    def entry(self, member_id: int, amount_cents: int, reason: str, sale_id: str) -> None:
        self.connection.execute(
            "INSERT INTO account_entry (member_id, amount_cents, reason, sale_id, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (member_id, amount_cents, reason[:200], sale_id, _stamp(utcnow())))

    def take_one(self, slot_code: str) -> None:
        self.connection.execute(
            "UPDATE slot SET stock = stock - 1 WHERE code = ? AND stock > 0", (slot_code,))

    def flag(self, slot_code: str, fault: str) -> None:
        self.connection.execute("UPDATE slot SET fault = ? WHERE code = ?",
                                (fault[:200], slot_code))


#: Something that moves with a transition; it may change the sale's member or reader reference.
Effect = Callable[[Write, Sale], None]


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

    def apply(write: Write, sale: Sale) -> None:
        sale.member_id = member_id
        write.entry(member_id, -sale.price_cents, f"sale {sale.slot_code} {sale.product_name}",
                    sale.id)

    return apply


def credit_back(write: Write, sale: Sale) -> None:
    """Return an account sale's debit, once, whatever asks for it again."""
    if sale.method != PaymentMethod.ACCOUNT or sale.member_id is None:
        return
    net = write.net_of_sale(sale.id)
    if net < 0:
        write.entry(sale.member_id, -net, f"credit back: sale {sale.slot_code} not delivered",
                    sale.id)


def product_left_slot(write: Write, sale: Sale) -> None:
    """The drop beam saw the product fall: one fewer in the slot."""
    write.take_one(sale.slot_code)


def flag_slot(fault: str) -> Effect:
    """Take the sale's slot out of sale until a technician has looked at it."""

    def apply(write: Write, sale: Sale) -> None:
        write.flag(sale.slot_code, fault)

    return apply


def both(*effects: Effect | None) -> Effect:
    def apply(write: Write, sale: Sale) -> None:
        for effect in effects:
            if effect is not None:
                effect(write, sale)

    return apply

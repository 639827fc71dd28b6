"""Sales: the list with filters, one sale's whole story, resolving a review, the CSV export.

A sale under review stays ``needs_review`` (a terminal state never moves); the technician's
verdict is recorded beside it, once, as ``resolution`` (delivered or refunded) with a note,
who and when, plus an appended ``sale_event`` and an audit entry, all in one transaction.
For an account sale the verdict also settles the money: refunded credits the member back,
delivered makes sure the debit stands. A card sale's money is settled at the card provider:
the kiosk can only record what the technician decided.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import ColumnElement, or_, update
from sqlalchemy import select as select_columns
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.maintenance.deps import TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS
from kiosk.ledger import Write, credit_back
from kiosk.machine import Machine
from kiosk.models import AccountEntry, AuditLog, Member, Sale, SaleEvent, utcnow
from kiosk.states import TERMINAL, PaymentMethod, SaleState

router = APIRouter(prefix="/api/maintenance", tags=["maintenance: sales"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Rows read from SQLite (one short query) and written out per chunk of the CSV export.
EXPORT_BATCH = 1000
EXPORT_COLUMNS = ("id", "created_at", "slot", "product", "price_cents", "method", "state",
                  "reason", "resolution")


class Resolution(StrEnum):
    DELIVERED = "delivered"
    REFUNDED = "refunded"


# --- what the routes take and give ----------------------------------------------------------


class SaleFilters(BaseModel):
    """Which sales: all filters combine; ``from`` is inclusive, ``to`` exclusive."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(None, alias="from", examples=["2026-11-01T00:00:00Z"])
    until: AwareDatetime | None = Field(None, alias="to", examples=["2026-12-01T00:00:00Z"])
    #: Repeat for several: ``?state=voided&state=needs_review``.
    state: list[SaleState] = []
    method: PaymentMethod | None = None
    slot: str | None = Field(None, min_length=1, max_length=8, pattern=r"^[A-Za-z0-9]+$")
    #: true: resolved reviews only; false: everything not resolved (with state=needs_review,
    #: the sales still waiting for a technician).
    resolved: bool | None = None

    @model_validator(mode="after")
    def _range(self) -> SaleFilters:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("`from` must be before `to`")
        return self


class SalePageQuery(SaleFilters):
    limit: int = Field(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    #: ``next_cursor`` of the previous page; absent for the newest sales.
    cursor: str | None = Field(None, max_length=200)


class SaleRecord(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    slot: str
    product: str
    price_cents: int
    method: PaymentMethod
    state: SaleState
    terminal: bool
    reason: str
    member_id: int | None
    #: The card reader's opaque reference of the authorization, for the card provider.
    reader_reference: str
    #: "", "delivered" or "refunded".
    resolution: str
    resolution_note: str
    resolved_by: str
    resolved_at: datetime | None
    #: A sale under review that no technician has resolved yet.
    awaiting_review: bool


class SalePage(BaseModel):
    sales: list[SaleRecord]
    #: Pass as ``cursor`` for the next (older) page; null on the last page.
    next_cursor: str | None


class SaleEventRecord(BaseModel):
    id: int
    at: datetime
    from_state: SaleState | None
    to_state: SaleState
    detail: dict[str, Any]


class SaleAccountEntry(BaseModel):
    id: int
    at: datetime
    member_id: int
    amount_cents: int
    reason: str


class MemberRef(BaseModel):
    id: int
    name: str


class SaleDetail(BaseModel):
    sale: SaleRecord
    member: MemberRef | None
    #: Every transition, oldest first, resolutions included.
    events: list[SaleEventRecord]
    account_entries: list[SaleAccountEntry]
    #: What the sale cost the member in the end: the sum of its account entries (negative = paid).
    account_net_cents: int


class SaleResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    #: What the technician found: required, shown in the sale's history and the audit log.
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400,
                                           pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]


# --- routes ---------------------------------------------------------------------------------


@router.get("/sales", response_model=SalePage)
def list_sales(query: Annotated[SalePageQuery, Query()], machine: MachineDep,
               technician: TechnicianDep) -> SalePage:
    """Sales, newest first, a page at a time (keyset: pages stay right while sales come in)."""
    with machine.db.session() as session:
        found = session.exec(page_statement(query)).all()
    page = found[:query.limit]
    more = len(found) > query.limit
    return SalePage(sales=[_sale_record(sale) for sale in page],
                    next_cursor=_cursor(page[-1]) if more else None)


@router.get("/sales.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_sales(filters: Annotated[SaleFilters, Query()], machine: MachineDep,
                 technician: TechnicianDep) -> StreamingResponse:
    """Every sale the filters select, oldest first, as CSV streamed in constant memory."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _csv(machine, filters), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="sales-{stamp}.csv"',
                 "Cache-Control": "no-store"},
    )


@router.get("/sales/{sale_id}", response_model=SaleDetail)
def sale_detail(sale_id: str, machine: MachineDep,
                technician: TechnicianDep) -> SaleDetail:
    with machine.db.session() as session:
        return _detail(session, _sale(session, sale_id))


@router.post("/sales/{sale_id}/resolve", response_model=SaleDetail)
def resolve_sale(sale_id: str, body: SaleResolve, machine: MachineDep,
                 technician: TechnicianDep) -> SaleDetail:
    """Close a review: the product was delivered, or the customer gets the money back. Once."""
    now = utcnow()
    with machine.db.session() as session:
        # The conditional update takes SQLite's write lock first, so two technicians resolving
        # at the same moment cannot both succeed.
        claimed = session.exec(
            update(Sale)
            .where(col(Sale.id) == sale_id, col(Sale.state) == SaleState.NEEDS_REVIEW,
                   col(Sale.resolution) == "")
            .values(resolution=body.resolution.value, resolution_note=body.note,
                    resolved_by=technician.name, resolved_at=now, updated_at=now)
        )
        if claimed.rowcount != 1:
            session.rollback()
            _refuse_resolution(_sale(session, sale_id))
        sale = _sale(session, sale_id)  # read after the update: the resolution is on it
        write = Write.within(session)
        net_before = write.net_of_sale(sale_id)
        money = _settle(write, sale, body.resolution, technician.name)
        net_after = write.net_of_sale(sale_id)
        session.add(SaleEvent(
            sale_id=sale_id, from_state=SaleState.NEEDS_REVIEW, to_state=SaleState.NEEDS_REVIEW,
            detail={"resolution": body.resolution.value, "note": body.note,
                    "by": technician.name, "money": money,
                    "account_cents": net_after - net_before},
        ))
        session.add(AuditLog(
            actor=technician.name, action="resolve_sale", target=f"sale {sale_id}",
            before={"state": SaleState.NEEDS_REVIEW.value, "resolution": "",
                    "account_net_cents": net_before},
            after={"state": SaleState.NEEDS_REVIEW.value, "resolution": body.resolution.value,
                   "note": body.note, "account_net_cents": net_after},
        ))
        machine.ledger.commit(session)
        return _detail(session, sale)


# --- resolving ------------------------------------------------------------------------------


def _refuse_resolution(sale: Sale) -> NoReturn:
    if sale.state != SaleState.NEEDS_REVIEW:
        raise ApiError(409, "not_under_review",
                       f"sale {sale.id} is {sale.state}: only a sale under review is resolved")
    when = sale.resolved_at.isoformat(timespec="seconds") if sale.resolved_at else "?"
    raise ApiError(409, "already_resolved",
                   f"sale {sale.id} was resolved as {sale.resolution} by {sale.resolved_by} "
                   f"at {when}")


def _settle(write: Write, sale: Sale, resolution: Resolution, technician: str) -> str:
    """Move the money the verdict calls for; returns what was done, in words for the history."""
    if sale.method != PaymentMethod.ACCOUNT:
        return ("card payment: the kiosk moves no money; settle at the card provider "
                f"(reader reference {sale.reader_reference or 'none'})")
    if sale.member_id is None:
        return "no member was charged for this sale"
    net = write.net_of_sale(sale.id)
    if resolution is Resolution.REFUNDED:
        if net >= 0:
            return "nothing to refund: the member was already credited back"
        credit_back(write, sale)
        return f"credited {-net} cents back to member {sale.member_id}"
    owed = -sale.price_cents - net
    if owed >= 0:
        return "the debit stands"
    write.entry(sale.member_id, owed,
                f"sale {sale.slot_code} {sale.product_name}: delivered (review by {technician})",
                sale.id)
    return f"debited {-owed} cents from member {sale.member_id}: the product was delivered"


# --- reading --------------------------------------------------------------------------------


def page_statement(query: SalePageQuery) -> SelectOfScalar[Sale]:
    """One page of the list, and one sale more to tell whether another page follows."""
    statement = select(Sale).where(*_conditions(query))
    if query.cursor is not None:
        statement = statement.where(*_beyond(*_read_cursor(query.cursor), older=True))
    statement = statement.order_by(col(Sale.created_at).desc(), col(Sale.id).desc())
    return statement.limit(query.limit + 1)


def _conditions(filters: SaleFilters, along_time: bool = False) -> list[ColumnElement[bool]]:
    """The filters as SQL. ``along_time`` keeps SQLite on the time index for every other term
    (``+column`` cannot use an index), so batches in time order never sort the whole table."""

    def term(column: Any, off_index: bool = False) -> Any:
        if along_time or off_index:
            return UnaryExpression(column.expression, operator=operators.custom_op("+"))
        return col(column)

    found: list[ColumnElement[bool]] = []
    if filters.since is not None:
        found.append(col(Sale.created_at) >= filters.since)
    if filters.until is not None:
        found.append(col(Sale.created_at) < filters.until)
    if filters.state:
        # One state reads the (state, time) index in order. Several would come out of it one
        # state after the other, and every match be sorted for a page: walking the time index
        # and keeping the states asked for stops after a page instead.
        several = len(filters.state) > 1
        found.append(term(Sale.state, off_index=several).in_([s.value for s in filters.state]))
    if filters.method is not None:
        found.append(term(Sale.method) == filters.method.value)
    if filters.slot is not None:
        found.append(term(Sale.slot_code) == filters.slot.upper())
    if filters.resolved is not None:
        found.append(term(Sale.resolution) != "" if filters.resolved
                     else term(Sale.resolution) == "")
    if filters.resolved:
        # Only a sale under review has a resolution (a CHECK of migration 0003): saying so
        # lets SQLite read the few of them from the (state, time) index instead of the table.
        found.append(term(Sale.state) == SaleState.NEEDS_REVIEW.value)
    return found


def _beyond(at: datetime, sale_id: str, older: bool) -> list[ColumnElement[bool]]:
    """Sales after (or, ``older``, before) the one at ``at`` with ``sale_id``, in list order."""
    if older:
        return [col(Sale.created_at) <= at, or_(col(Sale.created_at) < at, col(Sale.id) < sale_id)]
    return [col(Sale.created_at) >= at, or_(col(Sale.created_at) > at, col(Sale.id) > sale_id)]


def _sale(session: Session, sale_id: str) -> Sale:
    sale = session.get(Sale, sale_id)
    if sale is None:
        raise ApiError(404, "not_found", f"there is no sale {sale_id}")
    return sale


def _sale_record(sale: Sale) -> SaleRecord:
    state = SaleState(sale.state)
    return SaleRecord(
        id=sale.id, created_at=sale.created_at, updated_at=sale.updated_at,
        slot=sale.slot_code, product=sale.product_name, price_cents=sale.price_cents,
        method=PaymentMethod(sale.method), state=state, terminal=state in TERMINAL,
        reason=sale.reason, member_id=sale.member_id, reader_reference=sale.reader_reference,
        resolution=sale.resolution, resolution_note=sale.resolution_note,
        resolved_by=sale.resolved_by, resolved_at=sale.resolved_at,
        awaiting_review=state is SaleState.NEEDS_REVIEW and not sale.resolution,
    )


def _detail(session: Session, sale: Sale) -> SaleDetail:
    events = session.exec(select(SaleEvent).where(SaleEvent.sale_id == sale.id)
                          .order_by(col(SaleEvent.id))).all()
    entries = session.exec(select(AccountEntry).where(AccountEntry.sale_id == sale.id)
                           .order_by(col(AccountEntry.id))).all()
    member = session.get(Member, sale.member_id) if sale.member_id is not None else None
    return SaleDetail(
        sale=_sale_record(sale),
        member=MemberRef(id=member.id, name=member.name)
        if member is not None and member.id is not None else None,
        events=[SaleEventRecord(id=e.id or 0, at=e.at, from_state=e.from_state,
                                to_state=e.to_state, detail=e.detail) for e in events],
        account_entries=[SaleAccountEntry(id=a.id or 0, at=a.at, member_id=a.member_id,
                                          amount_cents=a.amount_cents, reason=a.reason)
                         for a in entries],
        account_net_cents=sum(a.amount_cents for a in entries),
    )


def _cursor(sale: Sale) -> str:
    raw = f"{sale.created_at.isoformat()}|{sale.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, sale_id = raw.split("|", 1)
        when = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "bad_cursor",
                       "cursor is not one this kiosk gave: start again without it") from None
    if when.tzinfo is None:
        raise ApiError(422, "bad_cursor", "cursor is not one this kiosk gave")
    return when, sale_id


def _csv(machine: Machine, filters: SaleFilters) -> Iterator[bytes]:
    """The export, a batch of rows at a time: never all in memory.

    Each batch is its own short query that resumes after the last row of the one before (by
    ``created_at``, then id) along the time index, so no connection or read snapshot is held
    between chunks: a slow download does not keep SQLite from checkpointing its WAL, and one
    abandoned half-way leaves nothing open.
    """
    columns = (col(Sale.id), col(Sale.created_at), col(Sale.slot_code), col(Sale.product_name),
               col(Sale.price_cents), col(Sale.method), col(Sale.state), col(Sale.reason),
               col(Sale.resolution))
    conditions = _conditions(filters, along_time=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue().encode()
    last: tuple[datetime, str] | None = None
    while True:
        statement = select_columns(*columns).where(*conditions)
        if last is not None:
            statement = statement.where(*_beyond(*last, older=False))
        statement = statement.order_by(col(Sale.created_at), col(Sale.id)).limit(EXPORT_BATCH)
        with machine.db.engine.connect() as connection:
            rows = connection.execute(statement).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            (sale_id, at.isoformat(), slot, _cell(product), price, method, state,
             _cell(reason), resolution)
            for sale_id, at, slot, product, price, method, state, reason, resolution in rows
        )
        yield buffer.getvalue().encode()
        if len(rows) < EXPORT_BATCH:
            return
        last = (rows[-1].created_at, rows[-1].id)


def _cell(text: str) -> str:
    """Keep a spreadsheet from reading a product name or reason as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

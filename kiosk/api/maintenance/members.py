"""Members and their fingerprints: accounts, balances, guided enrolment, removal.

A balance is the sum of the member's account entries; a technician moves it only by adding an
entry with a reason. A **top-up** adds money. A **correction** may take money away, but never
below a zero balance unless the request says ``force: true`` (a debt the operator knowingly
books, e.g. a product handed out by hand); the audit log records that it was forced.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from drivers.base import DeviceError, DeviceKind, DeviceRejected
from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.maintenance.deps import TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS, RowIdPath
from kiosk.enrolment import STEP_TIMEOUT, EnrolmentRefused, enrolments_of
from kiosk.ledger import balance_of
from kiosk.machine import Machine
from kiosk.models import AccountEntry, Member

router = APIRouter(prefix="/api/maintenance/members", tags=["maintenance: members"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

#: The largest single top-up or correction, in cents: a typo guard, not a policy.
MAX_AMOUNT_CENTS = 100_000
#: How many of a member's latest account entries the detail shows.
RECENT_ENTRIES = 50

#: An enrolment that cannot start, by its code: the HTTP status to answer with.
REFUSALS = {
    "not_found": 404,
    "member_inactive": 409,
    "already_enrolled": 409,
    "enrolment_running": 409,
    "library_full": 409,
    "reader_unavailable": 503,
}


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, examples=["Carol"])

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a member needs a name")
        return value


class MemberUpdate(BaseModel):
    """Rename, deactivate (``active: false``) or reactivate; leave out what stays."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=80)
    active: bool | None = None

    @field_validator("name")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a member needs a name")
        return value.strip() if value is not None else None


class BalanceKind(StrEnum):
    TOP_UP = "top_up"
    CORRECTION = "correction"


class BalanceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: BalanceKind
    #: Cents to add; a correction may be negative.
    amount_cents: int = Field(ge=-MAX_AMOUNT_CENTS, le=MAX_AMOUNT_CENTS)
    reason: str = Field(min_length=1, max_length=160, examples=["cash paid at the desk"])
    #: Allow a correction to leave the balance below zero.
    force: bool = False

    @field_validator("reason")
    @classmethod
    def _reasoned(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("say why the balance changes")
        return value

    @model_validator(mode="after")
    def _sign(self) -> BalanceChange:
        if self.kind is BalanceKind.TOP_UP and self.amount_cents <= 0:
            raise ValueError("a top-up adds money: amount_cents must be positive")
        if self.amount_cents == 0:
            raise ValueError("a correction of 0 cents changes nothing")
        return self


class EnrolmentStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The member agreed to have a fingerprint template kept on the reader: required.
    consent: bool
    #: How long each capture step waits for the finger.
    timeout_s: float = Field(STEP_TIMEOUT, ge=1, le=120)


class MemberPublic(BaseModel):
    id: int
    name: str
    active: bool
    balance_cents: int
    #: Whether a fingerprint is enrolled (its template lives on the reader, never here).
    fingerprint: bool
    fingerprint_page: int | None
    consent_at: str | None
    created_at: str


class EntryPublic(BaseModel):
    id: int
    amount_cents: int
    reason: str
    sale_id: str | None
    at: str


class MemberDetail(MemberPublic):
    #: The latest account entries, newest first.
    entries: list[EntryPublic]


class BalanceResult(BaseModel):
    member: MemberPublic
    entry: EntryPublic


class EnrolmentStepPublic(BaseModel):
    step: str
    at: str


class EnrolmentPublic(BaseModel):
    member: int
    name: str
    page: int
    #: starting, place_finger, lift_finger, place_again, merging, stored
    step: str
    #: running, succeeded, failed, cancelled
    state: str
    #: Why it failed or was cancelled; empty otherwise.
    reason: str
    #: What the person at the reader should do now.
    instruction: str
    technician: str
    timeout_s: float
    started_at: str
    ended_at: str | None
    steps: list[EnrolmentStepPublic]


# --- members --------------------------------------------------------------------------------


@router.get("", response_model=list[MemberPublic])
def list_members(machine: MachineDep, technician: TechnicianDep,
                 include_inactive: bool = True) -> list[MemberPublic]:
    """Every member with balance and whether a fingerprint is enrolled, by name."""
    balance = func.coalesce(func.sum(AccountEntry.amount_cents), 0)
    query = (select(Member, balance)
             .join(AccountEntry, col(AccountEntry.member_id) == col(Member.id), isouter=True)
             .group_by(col(Member.id)).order_by(col(Member.name), col(Member.id)))
    if not include_inactive:
        query = query.where(col(Member.active))
    with machine.db.session() as session:
        rows = session.exec(query).all()
    return [_public(member, int(total)) for member, total in rows]


@router.post("", status_code=201, response_model=MemberPublic)
def add_member(body: MemberCreate, machine: MachineDep,
               technician: TechnicianDep) -> MemberPublic:
    with machine.db.session() as session:
        member = Member(name=body.name)
        session.add(member)
        machine.ledger.commit(session)
        public = _public(member, 0)
    machine.ledger.audit(technician.name, "member_add", f"member {public.id}", before=None,
                         after={"name": public.name, "active": True})
    return public


@router.get("/{member_id}", response_model=MemberDetail)
def get_member(member_id: RowIdPath, machine: MachineDep,
               technician: TechnicianDep) -> MemberDetail:
    with machine.db.session() as session:
        member = _member(session, member_id)
        entries = session.exec(
            select(AccountEntry).where(AccountEntry.member_id == member_id)
            .order_by(col(AccountEntry.at).desc(), col(AccountEntry.id).desc())
            .limit(RECENT_ENTRIES)).all()
        public = _public(member, balance_of(session, member_id))
    return MemberDetail(**public.model_dump(), entries=[_entry(e) for e in entries])


@router.patch("/{member_id}", response_model=MemberPublic)
def edit_member(member_id: RowIdPath, body: MemberUpdate, machine: MachineDep,
                technician: TechnicianDep) -> MemberPublic:
    """Rename, deactivate or reactivate; a deactivated member's finger buys nothing."""
    with machine.db.session() as session:
        member = _member(session, member_id)
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for name, value in (("name", body.name), ("active", body.active)):
            if value is not None and getattr(member, name) != value:
                before[name], after[name] = getattr(member, name), value
                setattr(member, name, value)
        if after:
            session.add(member)
            machine.ledger.commit(session)
        public = _public(member, balance_of(session, member_id))
    if after:
        action = "member_edit"
        if set(after) == {"active"}:
            action = "member_reactivate" if after["active"] else "member_deactivate"
        machine.ledger.audit(technician.name, action, f"member {member_id}", before, after)
    return public


@router.post("/{member_id}/balance", status_code=201, response_model=BalanceResult,
             responses={409: {"description": "The correction would leave a negative balance"}})
def change_balance(member_id: RowIdPath, body: BalanceChange, machine: MachineDep,
                   technician: TechnicianDep) -> BalanceResult:
    """Top up, or correct, a member's balance with one account entry carrying the reason.

    Checked and written in one transaction that holds SQLite's write lock from its start, so
    no sale's debit (written by the ledger's scribe on another thread) can slip in between the
    check and the entry.
    """
    with machine.db.session() as session:
        # A write that changes nothing, to take the write lock before the balance is read.
        session.connection().exec_driver_sql(
            "UPDATE member SET name = name WHERE id = ?", (member_id,))
        member = _member(session, member_id)
        before = balance_of(session, member_id)
        after = before + body.amount_cents
        if body.amount_cents < 0 and after < 0 and not body.force:
            raise ApiError(409, "negative_balance",
                           f"this correction would take the balance of {member.name} from "
                           f"{before} to {after} cents; send force: true to book a debt")
        label = "top-up" if body.kind is BalanceKind.TOP_UP else "correction"
        entry = AccountEntry(member_id=member_id, amount_cents=body.amount_cents,
                             reason=f"{label} by {technician.name}: {body.reason}"[:200])
        session.add(entry)
        machine.ledger.commit(session)
        result = BalanceResult(member=_public(member, after), entry=_entry(entry))
    machine.ledger.audit(
        technician.name, f"balance_{body.kind.value}", f"member {member_id}",
        before={"balance_cents": before},
        after={"balance_cents": after, "amount_cents": body.amount_cents,
               "reason": body.reason, "forced": body.force and after < 0})
    return result


# --- fingerprints ---------------------------------------------------------------------------


@router.post("/{member_id}/enrolment", status_code=202, response_model=EnrolmentPublic,
             responses={503: {"description": "The fingerprint reader is offline"}})
async def start_enrolment(member_id: RowIdPath, body: EnrolmentStart, machine: MachineDep,
                          technician: TechnicianDep) -> EnrolmentPublic:
    """Start the guided enrolment of the member's finger; follow it by GET or on the events.

    The kiosk sells nothing until it ends (409 ``busy`` if a sale is running now).
    """
    if not body.consent:
        raise ApiError(422, "consent_required",
                       "the member must agree to have a fingerprint template kept on the "
                       "reader: send consent: true")
    try:
        job = await enrolments_of(machine).start(member_id, technician.name, body.timeout_s)
    except EnrolmentRefused as exc:
        raise ApiError(REFUSALS.get(exc.code, 409), exc.code, exc.message) from None
    return EnrolmentPublic.model_validate(job.view())


@router.get("/{member_id}/enrolment", response_model=EnrolmentPublic)
def get_enrolment(member_id: RowIdPath, machine: MachineDep,
                  technician: TechnicianDep) -> EnrolmentPublic:
    """The member's running enrolment, or the last one since the kiosk started."""
    job = enrolments_of(machine).latest(member_id)
    if job is None:
        raise ApiError(404, "not_found", f"no enrolment of member {member_id} since start-up")
    return EnrolmentPublic.model_validate(job.view())


@router.delete("/{member_id}/enrolment", response_model=EnrolmentPublic)
async def cancel_enrolment(member_id: RowIdPath, machine: MachineDep,
                           technician: TechnicianDep) -> EnrolmentPublic:
    """Cancel the member's running enrolment; one that has ended is returned unchanged."""
    job = await enrolments_of(machine).cancel(member_id, technician.name)
    if job is None:
        raise ApiError(404, "not_found", f"no enrolment of member {member_id} since start-up")
    return EnrolmentPublic.model_validate(job.view())


@router.delete("/{member_id}/fingerprint", response_model=MemberPublic,
               responses={503: {"description": "The reader is offline: nothing was erased"}})
async def remove_fingerprint(member_id: RowIdPath, machine: MachineDep,
                             technician: TechnicianDep) -> MemberPublic:
    """Erase the member's template from the reader, then forget its page.

    Refused (503) while the reader cannot erase it: the kiosk never forgets a page whose
    template would stay on the sensor.
    """
    member = await run_in_threadpool(_read_member, machine, member_id)
    page = member.fingerprint_page
    if page is None:
        raise ApiError(409, "no_fingerprint", f"{member.name} has no fingerprint enrolled")
    reader = machine.hardware.fingerprint
    if reader is None or not reader.health.ok:
        reason = machine.hardware.health(DeviceKind.FINGERPRINT).reason
        raise ApiError(503, "reader_unavailable",
                       f"the fingerprint reader is not ready ({reason}); nothing was erased")
    try:
        async with asyncio.timeout(machine.settings.settle_timeout):
            await reader.delete(page)
    except DeviceRejected as exc:
        raise ApiError(503, "reader_refused",
                       f"the reader did not erase page {page}: {exc.message}") from None
    except (DeviceError, TimeoutError) as exc:
        why = exc.message if isinstance(exc, DeviceError) else "no answer in time"
        raise ApiError(503, "reader_unavailable",
                       f"could not erase page {page}: {why}; nothing was changed") from None
    return await run_in_threadpool(_forget_page, machine, member_id, page, technician.name)


def _forget_page(machine: Machine, member_id: int, page: int, technician: str) -> MemberPublic:
    with machine.db.session() as session:
        member = _member(session, member_id)
        member.fingerprint_page = None
        session.add(member)
        machine.ledger.commit(session)
        public = _public(member, balance_of(session, member_id))
    machine.ledger.audit(technician, "fingerprint_remove", f"member {member_id}",
                         before={"fingerprint_page": page}, after={"fingerprint_page": None})
    return public


# --- plumbing -------------------------------------------------------------------------------


def _read_member(machine: Machine, member_id: int) -> Member:
    with machine.db.session() as session:
        return _member(session, member_id)


def _member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise ApiError(404, "not_found", f"no member {member_id}")
    return member


def _public(member: Member, balance_cents: int) -> MemberPublic:
    assert member.id is not None
    return MemberPublic(
        id=member.id, name=member.name, active=member.active, balance_cents=balance_cents,
        fingerprint=member.fingerprint_page is not None,
        fingerprint_page=member.fingerprint_page,
        consent_at=member.consent_at.isoformat() if member.consent_at else None,
        created_at=member.created_at.isoformat(),
    )


def _entry(entry: AccountEntry) -> EntryPublic:
    assert entry.id is not None
    return EntryPublic(id=entry.id, amount_cents=entry.amount_cents, reason=entry.reason,
                       sale_id=entry.sale_id, at=entry.at.isoformat())

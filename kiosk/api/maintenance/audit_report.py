"""The EVA-DTS / DEX audit report: a download for vending-management software.

The report's machine identification is ``KIOSK`` and the first twelve hex digits of the
SHA-256 of the database file's absolute path (``KIOSK3F2A1C0FFEE1``; the transmission header
carries its first ten characters): stable for as long as the kiosk keeps its database where
it is, different for two kiosks, and needing no setting. Moving the database file changes it.

Paid vends are completed sales (the reader charged, or the account was debited, for a product
seen to drop); test vends are the technicians' test vends that delivered. Events are failed
vends of sales and of test vends. A reset is recorded in the audit log (``dex_reset``) and
starts the "since reset" counters; nothing is deleted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from kiosk.api.deps import MachineDep
from kiosk.api.maintenance.deps import TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS
from kiosk.dex import EVENT_CODES, AuditData, SlotAudit, Tally, VendEvent, build_report
from kiosk.machine import Machine
from kiosk.models import AuditLog, Sale, SaleEvent, Slot, utcnow
from kiosk.states import SaleState

router = APIRouter(prefix="/api/maintenance/dex", tags=["maintenance: audit report"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

RESET = "dex_reset"
TEST_VEND = "test_vend"


class ResetPublic(BaseModel):
    reset_at: str
    #: Resets since initialisation, this one included.
    resets: int


def machine_id(database: Path) -> str:
    """``KIOSK`` and twelve hex digits of the database file's absolute path."""
    digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()
    return "KIOSK" + digest[:12].upper()


def local_zone() -> tzinfo:
    """The kiosk's own time zone: the report's dates are read by people on site."""
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


@router.get("", response_class=Response,
            responses={200: {"content": {"text/plain": {}},
                             "description": "The DEX file, as an attachment"}})
def download(machine: MachineDep, technician: TechnicianDep) -> Response:
    """The audit report as ``kiosk-<date>.dex`` (ASCII, CR LF line ends)."""
    zone = local_zone()
    data = gather(machine, utcnow())
    text = build_report(data, zone)
    name = f"kiosk-{data.read_at.astimezone(zone).date().isoformat()}.dex"
    machine.ledger.audit(
        technician.name, "dex_download", "dex",
        before={"last_reset_at": data.last_reset_at.isoformat() if data.last_reset_at
                else None},
        after={"paid": _tally(data.paid), "paid_since_reset": _tally(data.paid_since_reset),
               "file": name})
    return Response(text, media_type="text/plain; charset=us-ascii",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


@router.post("/reset", response_model=ResetPublic)
def reset(machine: MachineDep, technician: TechnicianDep) -> ResetPublic:
    """Start the report's "since reset" counters afresh (the history itself stays)."""
    data = gather(machine, utcnow())
    machine.ledger.audit(
        technician.name, RESET, "dex",
        before={"last_reset_at": data.last_reset_at.isoformat() if data.last_reset_at
                else None, "paid_since_reset": _tally(data.paid_since_reset),
                "test_since_reset": _tally(data.test_since_reset)},
        after={"resets": data.resets + 1})
    with machine.db.session() as session:
        resets = _resets(session)
    return ResetPublic(reset_at=resets[-1].isoformat(), resets=len(resets))


def gather(machine: Machine, now: datetime) -> AuditData:
    """What the report says, read from the database as it is at ``now``."""
    with machine.db.session() as session:
        resets = _resets(session)
        last_reset = resets[-1] if resets else None
        paid = _paid_by_slot(session, None)
        paid_reset = _paid_by_slot(session, last_reset)
        tests = _test_vends(session)
        events = _events(session, tests)
        slots = session.exec(select(Slot).order_by(col(Slot.code))).all()
    delivered = [(at, slot, price) for at, slot, outcome, price in tests
                 if outcome == "delivered"]
    test = _tally_tests(delivered, None)
    test_reset = _tally_tests(delivered, last_reset)
    return AuditData(
        machine_id=machine_id(machine.db.path),
        currency=machine.settings.currency,
        read_at=now,
        paid=_sum(paid.values()),
        paid_since_reset=_sum(paid_reset.values()),
        test=_sum(test.values()),
        test_since_reset=_sum(test_reset.values()),
        slots=[SlotAudit(code=slot.code, product_id=slot.product_id,
                         price_cents=slot.price_cents, paid=paid.get(slot.code, Tally()),
                         paid_since_reset=paid_reset.get(slot.code, Tally()),
                         test=test.get(slot.code, Tally()),
                         test_since_reset=test_reset.get(slot.code, Tally()),
                         fault=bool(slot.fault))
               for slot in slots],
        events=events,
        last_reset_at=last_reset,
        resets=len(resets),
    )


def _resets(session: Session) -> list[datetime]:
    return list(session.exec(select(AuditLog.at).where(AuditLog.action == RESET)
                             .order_by(col(AuditLog.at), col(AuditLog.id))).all())


def _paid_by_slot(session: Session, since: datetime | None) -> dict[str, Tally]:
    query = (select(Sale.slot_code, func.count(), func.coalesce(func.sum(Sale.price_cents), 0))
             .where(Sale.state == SaleState.COMPLETED).group_by(col(Sale.slot_code)))
    if since is not None:
        query = query.where(col(Sale.created_at) >= since)
    return {slot: Tally(int(count), int(value)) for slot, count, value in session.exec(query)}


def _test_vends(session: Session) -> list[tuple[datetime, str, str, int]]:
    """Every test vend: when, which slot, its outcome, the slot's price then."""
    rows = session.exec(select(AuditLog).where(AuditLog.action == TEST_VEND)
                        .order_by(col(AuditLog.at))).all()
    found = []
    for row in rows:
        after: dict[str, Any] = row.after or {}
        found.append((row.at, row.target, str(after.get("outcome", "")),
                      int(after.get("price_cents", 0) or 0)))
    return found


def _events(session: Session,
            tests: list[tuple[datetime, str, str, int]]) -> list[VendEvent]:
    failed = session.exec(
        select(SaleEvent, Sale.slot_code).join(Sale, col(Sale.id) == col(SaleEvent.sale_id))
        .where(SaleEvent.to_state == SaleState.DISPENSE_FAILED)).all()
    events = [VendEvent(event.at, slot, str(event.detail.get("outcome", "")))
              for event, slot in failed]
    events += [VendEvent(at, slot, outcome) for at, slot, outcome, _price in tests]
    return sorted((event for event in events if event.outcome in EVENT_CODES),
                  key=lambda event: event.at)


def _tally_tests(delivered: list[tuple[datetime, str, int]],
                 since: datetime | None) -> dict[str, Tally]:
    counts: Counter[str] = Counter()
    values: Counter[str] = Counter()
    for at, slot, price in delivered:
        if since is None or at >= since:
            counts[slot] += 1
            values[slot] += price
    return {slot: Tally(counts[slot], values[slot]) for slot in counts}


def _sum(tallies: Iterable[Tally]) -> Tally:
    items = list(tallies)
    return Tally(sum(t.count for t in items), sum(t.value_cents for t in items))


def _tally(tally: Tally) -> dict[str, int]:
    return {"count": tally.count, "value_cents": tally.value_cents}

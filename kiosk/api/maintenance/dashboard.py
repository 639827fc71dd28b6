"""The technician's dashboard: devices, service, today's takings, what needs attention."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import col, select

from kiosk.api.deps import MachineDep
from kiosk.api.maintenance.deps import TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS
from kiosk.models import Product, Sale, Slot
from kiosk.states import SaleState

router = APIRouter(prefix="/api/maintenance", tags=["maintenance: dashboard"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

#: A slot at or below this share of its capacity counts as low on stock.
LOW_STOCK_SHARE = 0.25


class ServiceChange(BaseModel):
    in_service: bool
    reason: str = Field("", max_length=200)


@router.get("/dashboard")
def dashboard(machine: MachineDep, technician: TechnicianDep) -> dict[str, Any]:
    # "Today" is the kiosk's own day, as on its DEX report and the technician's watch.
    local_now = datetime.now().astimezone()
    midnight = datetime.combine(local_now.date(), time.min, tzinfo=local_now.tzinfo)
    with machine.db.session() as session:
        count, revenue = session.exec(
            select(func.count(), func.coalesce(func.sum(Sale.price_cents), 0))
            .where(Sale.state == SaleState.COMPLETED, col(Sale.created_at) >= midnight)
        ).one()
        review = session.exec(select(func.count()).where(
            Sale.state == SaleState.NEEDS_REVIEW, Sale.resolution == "")).one()
        slots = session.exec(select(Slot, Product).join(Product, isouter=True)
                             .order_by(col(Slot.code))).all()
    low = [{"slot": slot.code, "product": product.name if product else "",
            "stock": slot.stock, "capacity": slot.capacity, "fault": slot.fault}
           for slot, product in slots
           if slot.fault or slot.stock <= slot.capacity * LOW_STOCK_SHARE]
    return {
        "service": machine.service.status().as_dict(),
        "held_by": machine.service.held_by,
        "devices": machine.hardware.describe(),
        "today": {"sales": int(count), "revenue_cents": int(revenue)},
        "needs_review": int(review),
        "attention": low,
        "database": {"path": str(machine.db.path), "writable": machine.db.writable,
                     "error": machine.db.write_error},
    }


@router.post("/service")
def change_service(body: ServiceChange, machine: MachineDep,
                   technician: TechnicianDep) -> dict[str, Any]:
    """Take the kiosk out of service (with a reason the dashboard shows), or back in."""
    before = {"held_by": machine.service.held_by}
    if body.in_service:
        machine.service.release()
    else:
        machine.service.hold(technician.name, body.reason)
    machine.ledger.audit(technician.name, "set_service", "kiosk", before=before,
                         after={"held_by": machine.service.held_by})
    machine.service_changed()
    return {"service": machine.service.status().as_dict(), "held_by": machine.service.held_by}

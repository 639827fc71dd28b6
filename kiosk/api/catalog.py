"""``GET /api/catalog``: what the touchscreen offers right now."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import col, select

from kiosk.api import access
from kiosk.api.deps import MachineDep
from kiosk.api.schemas import ERRORS, CatalogPublic, ProductPublic, SlotPublic, StockState
from kiosk.models import Product, Slot

router = APIRouter(prefix="/api/catalog", tags=["catalog"],
                   dependencies=[Depends(access.customer)], responses=ERRORS)


@router.get("", response_model=CatalogPublic)
async def catalog(machine: MachineDep) -> CatalogPublic:
    status = machine.service.status()
    mechanism = machine.hardware.vending
    known = mechanism.slots() if mechanism is not None else None
    slots = []
    with machine.db.session() as session:
        rows = session.exec(
            select(Slot, Product).join(Product, isouter=True).order_by(col(Slot.code))
        ).all()
    for slot, product in rows:
        if product is None or product.retired:
            continue
        sellable = slot.enabled and not slot.fault and (known is None or slot.code in known)
        state = (StockState.DISABLED if not sellable
                 else StockState.SOLD_OUT if slot.stock <= 0 else StockState.AVAILABLE)
        assert product.id is not None
        slots.append(SlotPublic(
            code=slot.code, price_cents=slot.price_cents, stock_state=state,
            product=ProductPublic(id=product.id, name=product.name,
                                  description=product.description, image=product.image),
        ))
    return CatalogPublic(
        currency=machine.settings.currency,
        in_service=status.in_service,
        payment_methods=list(status.payment_methods),
        simulated=bool(machine.hardware.simulators),
        slots=slots,
    )

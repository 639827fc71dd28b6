"""``/api/sales``: start a sale, follow it, cancel it."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from kiosk.api import access
from kiosk.api.deps import MachineDep
from kiosk.api.schemas import ERRORS, SaleCreate, SalePublic
from kiosk.sale_view import sale_view

router = APIRouter(prefix="/api/sales", tags=["sales"],
                   dependencies=[Depends(access.customer)], responses=ERRORS)


@router.post("", status_code=201, response_model=SalePublic)
async def start_sale(body: SaleCreate, machine: MachineDep) -> SalePublic:
    """Start a sale of one product from ``slot``; the response is the sale, just created."""
    sale = await machine.sales.start(body.slot.upper(), body.method)
    return SalePublic.model_validate(sale_view(sale))


@router.get("/{sale_id}", response_model=SalePublic)
async def get_sale(sale_id: str, machine: MachineDep) -> SalePublic:
    sale = await run_in_threadpool(machine.ledger.get, sale_id)
    return SalePublic.model_validate(sale_view(sale))


@router.post("/{sale_id}/cancel", response_model=SalePublic)
async def cancel_sale(sale_id: str, machine: MachineDep) -> SalePublic:
    """Cancel while the kiosk waits for payment; asking again, or after the end, changes nothing."""
    return SalePublic.model_validate(sale_view(await machine.sales.cancel(sale_id)))

"""Sales as an earlier kiosk left them.

An earlier kiosk committed a new sale as ``created`` on its own before moving it on to
``authorizing``; the ledger now records both steps in one commit. A database written before
may still hold a sale in ``created``, which the state table and recovery must handle.
"""

from __future__ import annotations

import uuid

from sqlmodel import select

from kiosk.db import Database
from kiosk.models import Product, Sale, SaleEvent, Slot, utcnow
from kiosk.states import PaymentMethod, SaleState


def opened_created(database: Database, slot_code: str, method: PaymentMethod) -> str:
    """A sale committed as ``created`` alone, its history ending there; its id."""
    with database.session() as session:
        slot = session.exec(select(Slot).where(Slot.code == slot_code)).one()
        product = session.get(Product, slot.product_id)
        assert product is not None
        now = utcnow()
        sale = Sale(id=str(uuid.uuid4()), slot_code=slot_code, product_name=product.name,
                    price_cents=slot.price_cents, method=method, state=SaleState.CREATED,
                    created_at=now, updated_at=now)
        session.add(sale)
        session.add(SaleEvent(sale_id=sale.id, from_state=None, to_state=SaleState.CREATED,
                              at=now, detail={"slot": slot_code, "method": method.value}))
        session.commit()
        return sale.id

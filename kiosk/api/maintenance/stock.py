"""Stock and prices: the planogram, restocking, and the products the kiosk can sell.

Every change is one transaction with its audit entry (who, what, the values before and after),
and is then announced on the ``catalog`` topic so the touchscreen shows it at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlmodel import Session, col, select

from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.maintenance.deps import TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS, RowId, RowIdPath
from kiosk.machine import Machine
from kiosk.models import AuditLog, Product, Slot

router = APIRouter(prefix="/api/maintenance", tags=["maintenance: stock and prices"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

#: Guards against a slipped finger (12000 for 120): no snack costs more than 1000.00.
MAX_PRICE_CENTS = 100_000
#: More than any spiral holds; a capacity above this is a typing error.
MAX_CAPACITY = 100

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters (they break the screen and the CSV)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80,
                                        pattern=PRINTABLE)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=400,
                                               pattern=PRINTABLE)]
#: A picture under the customer web folder, by relative path: no scheme, no "..", no host.
Image = Annotated[str, StringConstraints(
    max_length=200,
    pattern=r"^$|^(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.(?:png|jpe?g|webp|gif|svg)$",
)]
SlotCode = Annotated[str, Path(min_length=1, max_length=8, pattern=r"^[A-Za-z0-9]+$",
                               examples=["A1"])]


class ProductRef(BaseModel):
    id: int
    name: str
    retired: bool


class SlotRecord(BaseModel):
    code: str
    #: None for an empty slot; a retired product stays shown, but the slot is not for sale.
    product: ProductRef | None
    price_cents: int
    stock: int
    capacity: int
    enabled: bool
    #: Why the kiosk took the slot out of sale by itself; "" when fine.
    fault: str
    #: Whether the touchscreen offers this slot (product live, enabled, no fault, a known slot).
    for_sale: bool


class PlanogramPublic(BaseModel):
    currency: str
    slots: list[SlotRecord]


class SlotUpdate(BaseModel):
    """The fields to change; absent fields stay. ``product_id: null`` empties the slot."""

    model_config = ConfigDict(extra="forbid")

    product_id: RowId | None = None
    price_cents: int | None = Field(None, ge=0, le=MAX_PRICE_CENTS)
    capacity: int | None = Field(None, ge=0, le=MAX_CAPACITY)
    enabled: bool | None = None
    #: Only "" : the technician checked the slot, which puts it back on sale.
    fault: Literal[""] | None = None

    @model_validator(mode="after")
    def _no_null_but_product(self) -> SlotUpdate:
        nulls = [name for name in self.model_fields_set - {"product_id"}
                 if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self


class SlotRestock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How many are in the slot now; omitted or null fills it to its capacity.
    stock: int | None = Field(None, ge=0, le=MAX_CAPACITY)


class ProductBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description = ""
    image: Image = ""


class ProductCreate(ProductBase):
    pass


class ProductUpdate(BaseModel):
    """The fields to change; absent fields stay."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    image: Image | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ProductUpdate:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self


class ProductRecord(BaseModel):
    id: int
    name: str
    description: str
    image: str
    retired: bool
    created_at: datetime
    #: The slots holding this product.
    slots: list[str]


class ProductList(BaseModel):
    products: list[ProductRecord]


# --- the planogram --------------------------------------------------------------------------


@router.get("/planogram", response_model=PlanogramPublic)
def planogram(machine: MachineDep, technician: TechnicianDep) -> PlanogramPublic:
    """Every slot with its product, price, stock, capacity and whether it is for sale."""
    with machine.db.session() as session:
        rows = session.exec(select(Slot, Product).join(Product, isouter=True)
                            .order_by(col(Slot.code))).all()
    return PlanogramPublic(currency=machine.settings.currency,
                           slots=[_slot_record(machine, slot, product) for slot, product in rows])


@router.patch("/planogram/{code}", response_model=SlotRecord)
def change_slot(code: SlotCode, body: SlotUpdate, machine: MachineDep,
                technician: TechnicianDep) -> SlotRecord:
    """Change a slot's product, price, capacity or enabled; clear its fault once checked."""
    with machine.db.session() as session:
        slot = _slot(session, code)
        wanted = body.model_dump(exclude_unset=True)
        if "product_id" in wanted and wanted["product_id"] is not None:
            product = session.get(Product, wanted["product_id"])
            if product is None:
                raise ApiError(422, "unknown_product",
                               f"there is no product {wanted['product_id']}")
            if product.retired:
                raise ApiError(409, "product_retired",
                               f"product {product.id} ({product.name}) is retired: not for sale")
        capacity = wanted.get("capacity", slot.capacity)
        if slot.stock > capacity:
            raise ApiError(409, "stock_above_capacity",
                           f"slot {slot.code} holds {slot.stock}, more than a capacity of "
                           f"{capacity}: restock it to at most {capacity} first")
        before = {name: getattr(slot, name) for name, value in wanted.items()
                  if getattr(slot, name) != value}
        after = {name: wanted[name] for name in before}
        if after:
            for name, value in after.items():
                setattr(slot, name, value)
            session.add(slot)
            _record(session, technician.name, "change_slot", slot.code, before, after)
            machine.ledger.commit(session)
        product = session.get(Product, slot.product_id) if slot.product_id else None
        record = _slot_record(machine, slot, product)
    if after:
        machine.bus.publish("catalog", {"slot": slot.code, "change": "change_slot"})
    return record


@router.post("/planogram/{code}/restock", response_model=SlotRecord)
def restock_slot(code: SlotCode, machine: MachineDep, technician: TechnicianDep,
                 body: SlotRestock | None = None) -> SlotRecord:
    """Fill a slot to its capacity, or set how many it holds after counting (``stock``)."""
    with machine.db.session() as session:
        slot = _slot(session, code)
        stock = slot.capacity if body is None or body.stock is None else body.stock
        if stock > slot.capacity:
            raise ApiError(422, "above_capacity",
                           f"slot {slot.code} holds at most {slot.capacity}, not {stock}")
        if slot.product_id is None and stock > 0:
            raise ApiError(409, "empty_slot",
                           f"slot {slot.code} has no product: assign one before restocking")
        before = {"stock": slot.stock}
        slot.stock = stock
        session.add(slot)
        _record(session, technician.name, "restock_slot", slot.code, before, {"stock": stock})
        machine.ledger.commit(session)
        product = session.get(Product, slot.product_id) if slot.product_id else None
        record = _slot_record(machine, slot, product)
    machine.bus.publish("catalog", {"slot": slot.code, "change": "restock_slot"})
    return record


@router.post("/restock", response_model=PlanogramPublic)
def restock_all(machine: MachineDep, technician: TechnicianDep) -> PlanogramPublic:
    """Fill every slot that holds a product to its capacity: one audit entry for the round."""
    with machine.db.session() as session:
        rows = session.exec(select(Slot, Product).join(Product, isouter=True)
                            .order_by(col(Slot.code))).all()
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for slot, product in rows:
            if product is not None and slot.stock != slot.capacity:
                before[slot.code], after[slot.code] = slot.stock, slot.capacity
                slot.stock = slot.capacity
                session.add(slot)
        _record(session, technician.name, "restock_all", "all slots", before, after)
        machine.ledger.commit(session)
        records = [_slot_record(machine, slot, product) for slot, product in rows]
    machine.bus.publish("catalog", {"slots": sorted(after), "change": "restock_all"})
    return PlanogramPublic(currency=machine.settings.currency, slots=records)


# --- products -------------------------------------------------------------------------------


@router.get("/products", response_model=ProductList)
def products(machine: MachineDep, technician: TechnicianDep,
             retired: bool = False) -> ProductList:
    """The catalog's products by name; ``retired=true`` lists the retired ones too."""
    with machine.db.session() as session:
        query = select(Product).order_by(col(Product.name), col(Product.id))
        if not retired:
            query = query.where(col(Product.retired).is_(False))
        found = session.exec(query).all()
        holders = _slots_by_product(session)
    return ProductList(products=[_product_record(p, holders) for p in found])


@router.post("/products", status_code=201, response_model=ProductRecord)
def add_product(body: ProductCreate, machine: MachineDep,
                technician: TechnicianDep) -> ProductRecord:
    with machine.db.session() as session:
        product = Product(name=body.name, description=body.description, image=body.image)
        session.add(product)
        session.flush()
        _record(session, technician.name, "add_product", f"product {product.id}", None,
                body.model_dump())
        machine.ledger.commit(session)
        record = _product_record(product, {})
    machine.bus.publish("catalog", {"product": record.id, "change": "add_product"})
    return record


@router.patch("/products/{product_id}", response_model=ProductRecord)
def change_product(product_id: RowIdPath, body: ProductUpdate, machine: MachineDep,
                   technician: TechnicianDep) -> ProductRecord:
    """Rename a product or change its description or picture; sales keep the name they had."""
    with machine.db.session() as session:
        product = _product(session, product_id)
        if product.retired:
            raise ApiError(409, "product_retired", f"product {product_id} is retired")
        wanted = body.model_dump(exclude_unset=True)
        before = {name: getattr(product, name) for name, value in wanted.items()
                  if getattr(product, name) != value}
        after = {name: wanted[name] for name in before}
        if after:
            for name, value in after.items():
                setattr(product, name, value)
            session.add(product)
            _record(session, technician.name, "change_product", f"product {product_id}",
                    before, after)
            machine.ledger.commit(session)
        holders = _slots_by_product(session)
    if after:
        machine.bus.publish("catalog", {"product": product_id, "change": "change_product"})
    return _product_record(product, holders)


@router.post("/products/{product_id}/retire", response_model=ProductRecord)
def retire_product(product_id: RowIdPath, machine: MachineDep,
                   technician: TechnicianDep) -> ProductRecord:
    """Take a product out of the catalog for good; slots holding it stop selling. Idempotent."""
    with machine.db.session() as session:
        product = _product(session, product_id)
        holders = _slots_by_product(session)
        changed = not product.retired
        if changed:
            product.retired = True
            session.add(product)
            _record(session, technician.name, "retire_product", f"product {product_id}",
                    {"retired": False}, {"retired": True, "slots": holders.get(product_id, [])})
            machine.ledger.commit(session)
    if changed:
        machine.bus.publish("catalog", {"product": product_id, "change": "retire_product"})
    return _product_record(product, holders)


# --- reading and writing --------------------------------------------------------------------


def _slot(session: Session, code: str) -> Slot:
    slot = session.exec(select(Slot).where(Slot.code == code.upper())).first()
    if slot is None:
        raise ApiError(404, "not_found", f"there is no slot {code}")
    return slot


def _product(session: Session, product_id: int) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise ApiError(404, "not_found", f"there is no product {product_id}")
    return product


def _slots_by_product(session: Session) -> dict[int, list[str]]:
    holders: dict[int, list[str]] = {}
    for code, product_id in session.exec(
        select(Slot.code, Slot.product_id).order_by(col(Slot.code))
    ).all():
        if product_id is not None:
            holders.setdefault(product_id, []).append(code)
    return holders


def _slot_record(machine: Machine, slot: Slot, product: Product | None) -> SlotRecord:
    mechanism = machine.hardware.vending
    known = mechanism is None or slot.code in mechanism.slots()
    live = product is not None and not product.retired
    return SlotRecord(
        code=slot.code,
        product=(ProductRef(id=product.id, name=product.name, retired=product.retired)
                 if product is not None and product.id is not None else None),
        price_cents=slot.price_cents, stock=slot.stock, capacity=slot.capacity,
        enabled=slot.enabled, fault=slot.fault,
        for_sale=live and slot.enabled and not slot.fault and known,
    )


def _product_record(product: Product, holders: dict[int, list[str]]) -> ProductRecord:
    assert product.id is not None
    return ProductRecord(id=product.id, name=product.name, description=product.description,
                         image=product.image, retired=product.retired,
                         created_at=product.created_at, slots=holders.get(product.id, []))


def _record(session: Session, actor: str, action: str, target: str,
            before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """The audit entry, in the same transaction as the change it describes."""
    session.add(AuditLog(actor=actor, action=action, target=target, before=before, after=after))

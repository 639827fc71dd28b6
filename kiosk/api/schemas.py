"""What the customer API takes and gives, as typed models for the OpenAPI description."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from kiosk.states import PaymentMethod, SaleState

#: A row id as SQLite stores it (a signed 64-bit integer): larger numbers are a 422, not a 500.
ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]
RowIdPath = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]


class StockState(StrEnum):
    AVAILABLE = "available"
    SOLD_OUT = "sold_out"
    DISABLED = "disabled"


class ProductPublic(BaseModel):
    id: int
    name: str
    description: str
    image: str


class SlotPublic(BaseModel):
    code: str
    product: ProductPublic | None
    price_cents: int
    stock_state: StockState


class CatalogPublic(BaseModel):
    #: ISO 4217 code; every price is in integer cents (minor units) of it.
    currency: str
    in_service: bool
    payment_methods: list[PaymentMethod]
    simulated: bool
    slots: list[SlotPublic]


class SaleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot: str = Field(min_length=1, max_length=8, pattern=r"^[A-Za-z0-9]+$", examples=["A1"])
    method: PaymentMethod


class SalePublic(BaseModel):
    id: str
    slot: str
    product: str
    price_cents: int
    method: PaymentMethod
    state: SaleState
    terminal: bool
    reason: str
    #: What the customer should do or know now: "present your card", "take your product"...
    instruction: str
    created_at: str
    updated_at: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorPublic(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorPublic, "description": description}
    for status, description in (
        (403, "Not allowed from this address or origin"),
        (404, "No such sale"),
        (409, "Another sale is running, the slot cannot be sold, or it is too late"),
        (422, "The request is malformed"),
        (503, "The kiosk is out of service or cannot record the sale"),
    )
}

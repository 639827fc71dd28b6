"""The kiosk's tables. Money is integer cents; times are UTC.

No table has a column for card data or fingerprint templates: a card sale keeps only the
reader's opaque reference, a member only the library page of the fingerprint module.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, Index, String
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from kiosk.states import PaymentMethod, SaleState


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC time that comes back from SQLite as UTC (SQLite itself keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive time {value} given: the kiosk stores UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(UtcDateTime(), nullable=nullable, index=index),
    )


class Product(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    description: str = Field(default="", max_length=400)
    #: File name of a picture under the web folder; empty draws a generated tile.
    image: str = Field(default="", max_length=200)
    retired: bool = False
    created_at: datetime = _time()


class Slot(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    #: The code printed on the machine: A1, B3 ...; also the mechanism's slot name.
    code: str = Field(max_length=8, unique=True, index=True)
    product_id: int | None = Field(default=None, foreign_key="product.id")
    price_cents: int = Field(ge=0)
    stock: int = Field(default=0, ge=0)
    capacity: int = Field(default=10, ge=0)
    enabled: bool = True
    #: Why the kiosk took the slot out of sale by itself (a jam, an unknown vend); empty if fine.
    fault: str = Field(default="", max_length=200)


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    active: bool = True
    #: The page of the fingerprint module's library holding this member's template.
    fingerprint_page: int | None = Field(default=None, unique=True)
    #: When the member agreed to have a fingerprint template kept on the module.
    consent_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()


class AccountEntry(SQLModel, table=True):
    """One signed movement of a member's balance; the balance is their sum."""

    __tablename__ = "account_entry"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    amount_cents: int
    reason: str = Field(max_length=200)
    sale_id: str | None = Field(default=None, foreign_key="sale.id", index=True)
    at: datetime = _time()


class Sale(SQLModel, table=True):
    # The schema (checks, the one-open-sale index) lives in the migrations; see 0001.
    # The sale list reads these in time order and filters in them, not in the rows (see 0005).
    __table_args__ = (
        Index("ix_sale_created_at_filters", "created_at", "state", "method", "slot_code",
              "resolution"),
        Index("ix_sale_state_created_at_filters", "state", "created_at", "method", "slot_code",
              "resolution"),
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    slot_code: str = Field(max_length=8)
    product_name: str = Field(max_length=80)
    price_cents: int = Field(ge=0)
    method: PaymentMethod = Field(sa_type=String(16))
    state: SaleState = Field(default=SaleState.CREATED, sa_type=String(16))
    #: The card reader's opaque reference of the authorization (never card data).
    reader_reference: str = Field(default="", max_length=64)
    member_id: int | None = Field(default=None, foreign_key="member.id")
    #: Why the sale ended as it did, in words a customer or technician can act on.
    reason: str = Field(default="", max_length=200)
    created_at: datetime = _time()
    updated_at: datetime = _time()
    #: A technician's verdict on a needs_review sale, "delivered" or "refunded"; "" until then.
    #: Given once (a trigger refuses to rewrite it, see migration 0003); the state stays.
    resolution: str = Field(default="", max_length=16)
    resolution_note: str = Field(default="", max_length=400)
    resolved_by: str = Field(default="", max_length=80)
    resolved_at: datetime | None = _time(nullable=True)


class SaleEvent(SQLModel, table=True):
    """One transition of a sale, appended and never changed."""

    __tablename__ = "sale_event"

    id: int | None = Field(default=None, primary_key=True)
    sale_id: str = Field(foreign_key="sale.id", index=True)
    from_state: SaleState | None = Field(default=None, sa_type=String(16))
    to_state: SaleState = Field(sa_type=String(16))
    at: datetime = _time()
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Technician(SQLModel, table=True):
    """Someone who may use the maintenance page; the secret is kept only as an argon2id hash."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True, index=True)
    secret_hash: str = Field(max_length=200)
    active: bool = True
    #: Failed logins since the last success; drives the growing delay and the lockout.
    failed_logins: int = 0
    locked_until: datetime | None = _time(nullable=True)
    created_at: datetime = _time()


class TechnicianSession(SQLModel, table=True):
    """A logged-in browser: the cookie holds a token whose SHA-256 is kept here, never the token."""

    __tablename__ = "technician_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    technician_id: int = Field(foreign_key="technician.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _time()
    expires_at: datetime = _time()


class KioskState(SQLModel, table=True):
    """Small facts about the kiosk that must survive a restart (a technician's service hold)."""

    __tablename__ = "kiosk_state"

    key: str = Field(primary_key=True, max_length=40)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _time()


class AuditLog(SQLModel, table=True):
    """Who did what to the kiosk, when, with the values before and after."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(index=True)
    #: A technician's name, or "kiosk" / "recovery" for what the kiosk did by itself.
    actor: str = Field(max_length=80)
    action: str = Field(max_length=80)
    target: str = Field(default="", max_length=120)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))

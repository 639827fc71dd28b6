"""The kiosk's first schema: products, slots, sales and their events, members, accounts, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = (
    "created", "authorizing", "authorized", "dispensing", "dispensed", "completed",
    "declined", "cancelled", "dispense_failed", "voided", "needs_review",
)
OPEN_STATES = ("created", "authorizing", "authorized", "dispensing", "dispensed", "dispense_failed")


def _states(column: str) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in STATES)})"


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "product",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("description", sa.String(400), nullable=False),
        sa.Column("image", sa.String(200), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        _time("created_at"),
    )
    op.create_table(
        "slot",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("product.id"), nullable=True),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("fault", sa.String(200), nullable=False),
        sa.CheckConstraint("price_cents >= 0", name="slot_price_not_negative"),
        sa.CheckConstraint("stock >= 0 AND stock <= capacity", name="slot_stock_within_capacity"),
    )
    op.create_index("ix_slot_code", "slot", ["code"], unique=True)
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("fingerprint_page", sa.Integer(), nullable=True, unique=True),
        _time("consent_at", nullable=True),
        _time("created_at"),
    )
    op.create_table(
        "sale",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("slot_code", sa.String(8), nullable=False),
        sa.Column("product_name", sa.String(80), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reader_reference", sa.String(64), nullable=False),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.CheckConstraint("price_cents >= 0", name="sale_price_not_negative"),
        sa.CheckConstraint("method IN ('card', 'account')", name="sale_method_known"),
        sa.CheckConstraint(_states("state"), name="sale_state_known"),
    )
    op.create_index("ix_sale_state", "sale", ["state"])
    op.create_index("ix_sale_created_at", "sale", ["created_at"])
    # One unfinished sale at a time, kept by the database even against a second process.
    op.execute(
        "CREATE UNIQUE INDEX ix_sale_one_open ON sale ((0)) "
        f"WHERE state IN ({', '.join(repr(s) for s in OPEN_STATES)})"
    )
    op.create_table(
        "sale_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sale_id", sa.String(36), sa.ForeignKey("sale.id"), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        _time("at"),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint(_states("to_state"), name="sale_event_state_known"),
    )
    op.create_index("ix_sale_event_sale_id", "sale_event", ["sale_id"])
    # Append-only: the history of a sale is evidence, so the database refuses to rewrite it.
    op.execute(
        "CREATE TRIGGER sale_event_append_only_update BEFORE UPDATE ON sale_event "
        "BEGIN SELECT RAISE(ABORT, 'sale_event is append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER sale_event_append_only_delete BEFORE DELETE ON sale_event "
        "BEGIN SELECT RAISE(ABORT, 'sale_event is append-only'); END"
    )
    op.create_table(
        "account_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("sale_id", sa.String(36), sa.ForeignKey("sale.id"), nullable=True),
        _time("at"),
    )
    op.create_index("ix_account_entry_member_id", "account_entry", ["member_id"])
    op.create_index("ix_account_entry_sale_id", "account_entry", ["sale_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        _time("at"),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("target", sa.String(120), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    for table in ("audit_log", "account_entry", "sale_event", "sale", "member", "slot", "product"):
        op.drop_table(table)

"""A technician's resolution of a sale under review: delivered or refunded, by whom, when, why.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The sale stays ``needs_review`` (terminal: its state never moves again); the resolution is
recorded beside it, once. The columns are added in place with SQLite's ALTER TABLE rather than
Alembic's batch copy-and-move, which would silently lose the one-open-sale expression index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESOLUTIONS = ("delivered", "refunded")


def upgrade() -> None:
    # Written as SQL because Alembic's add_column would leave the CHECK out: a resolution is
    # one of the known words, and only a sale under review can have one.
    op.execute(
        "ALTER TABLE sale ADD COLUMN resolution VARCHAR(16) NOT NULL DEFAULT '' "
        "CONSTRAINT sale_resolution_known CHECK (resolution = '' OR (resolution IN "
        f"({', '.join(repr(r) for r in RESOLUTIONS)}) AND state = 'needs_review'))"
    )
    op.add_column("sale", sa.Column("resolution_note", sa.String(400), nullable=False,
                                    server_default=""))
    op.add_column("sale", sa.Column("resolved_by", sa.String(80), nullable=False,
                                    server_default=""))
    op.add_column("sale", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    # A resolution is evidence, like the sale's history: once given it cannot be rewritten.
    op.execute(
        "CREATE TRIGGER sale_resolution_once BEFORE UPDATE OF resolution, resolution_note, "
        "resolved_by, resolved_at ON sale WHEN OLD.resolution != '' "
        "BEGIN SELECT RAISE(ABORT, 'a sale is resolved once'); END"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER sale_resolution_once")
    for column in ("resolved_at", "resolved_by", "resolution_note", "resolution"):
        op.execute(f"ALTER TABLE sale DROP COLUMN {column}")

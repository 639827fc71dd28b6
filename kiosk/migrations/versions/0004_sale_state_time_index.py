"""The sale list by state, newest first: one index on (state, created_at).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

A technician's list of, say, declined sales is a page of the newest ones before a cursor. With
an index on the state alone SQLite read every sale in that state and sorted them all for each
page (a tenth of a second per page with 20,000 declines among a million sales); with the time
after the state in the index it reads the page in order and stops. The index on the state
alone is dropped: this one serves every lookup by state too (the unfinished sales at start-up).

The sale id is not in the index: index records hold their columns side by side, and the
microseconds of a time followed by an id that starts with digits would put a run of thirteen
or more digits in the file, which looks like a card number to anyone auditing it. Sales with
the same microsecond are rare, and SQLite orders those few by id itself.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sale_state_created_at", "sale", ["state", "created_at"])
    op.drop_index("ix_sale_state", "sale")


def downgrade() -> None:
    op.create_index("ix_sale_state", "sale", ["state"])
    op.drop_index("ix_sale_state_created_at", "sale")

"""Events say whether their wall time was corrected after the hub's clock was synchronised.

A hub with no real-time clock stamps events with a wrong wall time until NTP or the council
tells it the time; it then corrects them (hub.store.clockfix), before sending or, for events
already sent, by a clock_corrected system event the council applies to its rows. False for
every event stored before: none was corrected.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL (11+) adds the column without rewriting the table, and
    # SQLite adds it in place.
    op.add_column(
        "events",
        sa.Column("clock_corrected", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("events", "clock_corrected")  # SQLite >= 3.35 drops a plain column in place

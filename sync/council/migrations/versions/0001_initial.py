"""Initial council schema: hubs and their events.

Frozen copy of the tables as they were at this revision (not `metadata.create_all`), so a
later change to store.py needs a new revision rather than silently diverging.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hubs",
        sa.Column("hub_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("enrolled_at", sa.Float(), nullable=False),
        sa.Column("last_contact", sa.Float(), nullable=True),
        sa.Column("software_version", sa.String(64), nullable=True),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("hub_id", sa.String(64), sa.ForeignKey("hubs.hub_id"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("monotonic", sa.Float(), nullable=False),
        sa.Column("sensor_id", sa.String(128), nullable=True),
        sa.Column("quantity", sa.String(32), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("body", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.UniqueConstraint("hub_id", "seq", name="uq_events_hub_seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_hub_id_id", "events", ["hub_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_hub_id_id", table_name="events")
    op.drop_table("events")
    op.drop_table("hubs")

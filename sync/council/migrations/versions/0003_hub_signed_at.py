"""Hubs remember the signed timestamp of the upload their fleet figures came from.

A replayed or late-retried upload (signed earlier, arriving later) still stores its events,
but must not put an older health report, clock offset or last contact over a newer one;
comparing signed timestamps needs the last one applied. NULL until the next upload.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hubs", sa.Column("signed_at", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("hubs", "signed_at")  # SQLite >= 3.35 drops a plain column in place

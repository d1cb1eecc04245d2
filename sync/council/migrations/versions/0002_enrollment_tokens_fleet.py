"""Enrollment codes, user tokens, settings; hub names, configs and fleet figures.

Frozen copy of what this revision adds (not imported from sync.council.tables), so a later
change there needs a new revision rather than silently diverging.

Hubs gain columns in place (ALTER TABLE ADD COLUMN with a default, which SQLite supports)
and a unique index on the public key: rebuilding `hubs`, SQLite's way to add a table
constraint, is unsafe while `events` holds a foreign key to it. The per-hub figures that
ingest keeps from now on (high water, events held) are filled in from the events held.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_NEW_HUB_COLUMNS = (
    ("name", sa.String(200), True, None),
    ("config", _Json, False, "'{}'"),
    ("config_version", sa.Integer(), False, "0"),  # 0: never configured by the council
    ("health", _Json, True, None),
    ("health_at", sa.Float(), True, None),
    ("clock_offset_s", sa.Float(), True, None),
    ("high_water", sa.BigInteger(), False, "0"),
    ("events_held", sa.BigInteger(), False, "0"),
)


def upgrade() -> None:
    bind = op.get_bind()
    shared = bind.execute(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT public_key FROM hubs GROUP BY public_key "
            "HAVING COUNT(*) > 1) AS dup"
        )
    ).scalar_one()
    if shared:
        raise RuntimeError(
            f"{shared} public key(s) belong to more than one hub; one key must mean one hub "
            "from revision 0002 on: remove or re-key the extra hubs, then start again"
        )
    for name, type_, nullable, default in _NEW_HUB_COLUMNS:
        server_default = None if default is None else sa.text(default)
        op.add_column(
            "hubs", sa.Column(name, type_, nullable=nullable, server_default=server_default)
        )
    op.create_index("uq_hubs_public_key", "hubs", ["public_key"], unique=True)

    hubs = sa.table("hubs", sa.column("hub_id"), sa.column("high_water"), sa.column("events_held"))
    events = sa.table("events", sa.column("hub_id"), sa.column("seq"))
    mine = events.c.hub_id == hubs.c.hub_id
    op.execute(
        hubs.update().values(
            high_water=sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0))
            .where(mine)
            .scalar_subquery(),
            events_held=sa.select(sa.func.count())
            .select_from(events)
            .where(mine)
            .scalar_subquery(),
        )
    )

    op.create_table(
        "enrollment_codes",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("hub_id", sa.String(64), sa.ForeignKey("hubs.hub_id"), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("code_sha256", name="uq_enrollment_codes_code_sha256"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tokens",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_tokens_token_sha256"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", _Json, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("tokens")
    op.drop_table("enrollment_codes")
    op.drop_index("uq_hubs_public_key", table_name="hubs")
    for name, *_ in reversed(_NEW_HUB_COLUMNS):
        op.drop_column("hubs", name)  # SQLite >= 3.35 drops a plain column in place

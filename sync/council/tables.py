"""The council's tables as the code uses them (SQLAlchemy Core).

The schema itself is created by the Alembic revisions under `migrations/`, each holding a
frozen copy of what it adds; a test compares these definitions with the migrated database on
both engines, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# SQLite only makes INTEGER PRIMARY KEY a rowid alias (and AUTOINCREMENT), not BIGINT.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

hubs = sa.Table(
    "hubs",
    metadata,
    sa.Column("hub_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),
    sa.Column("enrolled_at", sa.Float(), nullable=False),
    sa.Column("last_contact", sa.Float(), nullable=True),
    sa.Column("software_version", sa.String(64), nullable=True),
    # Added by 0002.
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("config", Json, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("config_version", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("health", Json, nullable=True),  # the latest health report, validated
    sa.Column("health_at", sa.Float(), nullable=True),
    sa.Column("clock_offset_s", sa.Float(), nullable=True),
    # Kept by ingest in the same transaction as the events, so acks and the fleet view never
    # scan the events table.
    sa.Column("high_water", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("events_held", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    # Added by 0003: the signed timestamp of the upload the fleet figures (last_contact,
    # health, clock_offset_s, software_version) came from; older uploads do not replace them.
    sa.Column("signed_at", sa.Float(), nullable=True),
)
# A unique index rather than a table constraint: SQLite adds an index in place, whereas a
# constraint would mean rebuilding `hubs`, which the events' foreign key makes unsafe.
sa.Index("uq_hubs_public_key", hubs.c.public_key, unique=True)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
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
    sa.Column("body", Json, nullable=False),
    # Added by 0004: wall_time was stamped before the hub's clock was synchronised and has
    # since been corrected (by the hub before sending, or here by a clock_corrected event).
    # `body` stays as the hub sent it.
    sa.Column("clock_corrected", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("hub_id", "seq", name="uq_events_hub_seq"),
    sqlite_autoincrement=True,  # ids never reused, even after the newest row is deleted
)
sa.Index("ix_events_hub_id_id", events.c.hub_id, events.c.id)

# Secrets (codes, tokens) are stored only as SHA-256 hex: a copy of the database (a backup,
# a stolen disk) gives nobody a way in.
enrollment_codes = sa.Table(
    "enrollment_codes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
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

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("last_used_at", sa.Float(), nullable=True),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    sa.UniqueConstraint("token_sha256", name="uq_tokens_token_sha256"),
    sqlite_autoincrement=True,
)

# Council-wide settings, one JSON value per key (e.g. the config new hubs start with).
settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", Json, nullable=False),
)

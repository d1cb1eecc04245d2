"""Alembic environment: runs only on the connection CouncilStore.open hands over.

Offline (SQL script) mode is not supported: the store migrates itself, inside its own
locked transaction, so there is no separate `alembic upgrade` step to forget.
"""

from __future__ import annotations

from alembic import context

from sync.council.store import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("council migrations run through sync.council.store.CouncilStore.open")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
)
with context.begin_transaction():
    context.run_migrations()

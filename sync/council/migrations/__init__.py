"""Alembic revisions of the council schema; applied by CouncilStore.open, not by hand."""

"""The council's store: one schema on SQLite (embedded default) and PostgreSQL (production).

Why it looks like this:
- Idempotency lives in the database, as UNIQUE (hub_id, seq): a hub re-sends any batch
  whose acknowledgement it never saw, and the council must store it once, whichever
  connection or process gets there first. Under the ingest lock (below) the rows not yet
  held are known exactly, so they go in by the engine's fastest bulk path (PostgreSQL:
  COPY) with no conflict clause; should the constraint ever refuse one, the batch is rolled
  back and redone with ON CONFLICT DO NOTHING.
- `events.id` is the council's ingest order, the pull API's cursor. A cursor is only safe if
  ids become visible in id order; ingests are therefore serialised (SQLite: BEGIN IMMEDIATE;
  PostgreSQL: a transaction-scoped advisory lock), otherwise a reader could see id 101 commit
  before id 100 and step past 100 for ever.
- Per-hub figures the hub and the fleet view need on every upload (high water, events held,
  merged health report) are kept on the hubs row by ingest, in the same transaction as the
  events, so nothing ever scans the events table to answer an upload.
- An enrollment code is claimed by one conditional UPDATE (unused, unrevoked, unexpired) in
  the transaction that creates the hub: of two concurrent redemptions, the row lock lets
  exactly one match, and a hub that cannot be created gives the code back by rolling back.
- The schema is created and upgraded by the Alembic revisions under `migrations/`, never by
  `create_all`, so both engines and every deployed council follow the same history.

Module layout: tables in `tables`, engines and transactions in `db`, exceptions in
`errors`, secrets in `credentials`, record checks in `records`, health reports and the fleet
view in `fleet`, codes/enrollment/hubs/tokens in `access` (a mixin of CouncilStore); this
module is the API and re-exports every public name, so `from sync.council.store import ...`
is enough.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from sync.council import clockfix
from sync.council.access import (
    MAX_TEXT,
    ROLES,
    AccessStore,
    CodeInfo,
    Hub,
    NewCode,
    NewToken,
    TokenInfo,
)
from sync.council.db import decoded, is_pg, make_engine, now_or, serialised
from sync.council.errors import (
    Conflict,
    EnrollmentRefused,
    KeyAlreadyEnrolled,
    NotFound,
    RefusalReason,
    StoreError,
)
from sync.council.fleet import FleetEntry, LowBattery, SilentSensor, fleet_entry, validate_health
from sync.council.records import (
    BODY,
    COLUMNS,
    KINDS,
    SEQ,
    Row,
    finite,
    row_for,
    same_json,
    short_text,
)
from sync.council.tables import events, hubs, metadata

__all__ = [
    "MAX_TEXT",
    "ROLES",
    "CodeInfo",
    "Conflict",
    "CouncilEvent",
    "CouncilStore",
    "EnrollmentRefused",
    "EventPage",
    "FleetEntry",
    "Hub",
    "IngestResult",
    "KeyAlreadyEnrolled",
    "LowBattery",
    "NewCode",
    "NewToken",
    "NotFound",
    "RefusalReason",
    "SilentSensor",
    "StoreError",
    "TokenInfo",
    "metadata",
]

JSONValue = Any

MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary but fixed: the key of the PostgreSQL advisory locks this store takes.
_MIGRATE_LOCK = 0x4845_4152_5448_0001
_INGEST_LOCK = 0x4845_4152_5448_0002


@dataclass(frozen=True, slots=True)
class CouncilEvent:
    """One event as the council holds it; `id` is the pull API's cursor."""

    id: int
    hub_id: str
    seq: int
    kind: str
    wall_time: float
    clock_synced: bool
    monotonic: float
    sensor_id: str | None
    quantity: str | None
    value: float | None
    received_at: float
    body: dict[str, JSONValue]
    clock_corrected: bool = False  # wall_time corrected since it was stamped (clockfix)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an upload achieved. `held` is every seq of the batch now stored with the content
    sent: exactly what the hub may mark synced. `conflicts` are seqs stored with different
    content (never overwritten; the hub renumbers them above `high_water`). There is no
    "contiguous up to" figure on purpose: a hub's quota may drop routine readings, so its seqs
    legitimately have holes."""

    new: int
    held: tuple[int, ...]
    conflicts: tuple[int, ...] = ()
    high_water: int = 0  # the highest seq held for the hub, 0 when none
    config_version: int = 0  # the hub's current config version, for the acknowledgement

    @property
    def duplicates(self) -> int:
        return len(self.held) - self.new


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[CouncilEvent]
    next_cursor: int
    more: bool


@dataclass(frozen=True, slots=True)
class _FleetFigures:
    """What an upload says about its hub, checked before the ingest transaction opens."""

    now: float
    report: dict[str, JSONValue] | None
    software_version: str | None
    offset: float | None
    signed: float | None

    def changes(self, stored_health: Any) -> dict[str, Any]:
        """The hubs-row values this upload sets (when it is not older than the last one)."""
        values: dict[str, Any] = {"last_contact": self.now}
        if self.signed is not None:
            values["signed_at"] = self.signed
        if self.software_version is not None:
            values["software_version"] = self.software_version
        if self.report is not None:
            values.update(health={**(stored_health or {}), **self.report}, health_at=self.now)
        if self.offset is not None:
            values["clock_offset_s"] = self.offset
        return values


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class CouncilStore(AccessStore):
    """The council's database. Thread-safe: each call takes its own pooled connection.
    Times are Unix seconds; every `now` parameter defaults to time.time()."""

    def __init__(self, engine: Engine, applied: Sequence[str]) -> None:
        self.engine = engine
        self.applied_migrations: tuple[str, ...] = tuple(applied)  # by this open, oldest first

    @classmethod
    def open(cls, url: str) -> CouncilStore:
        """Connect and bring the schema to the newest revision (a no-op when it is)."""
        engine = make_engine(url)
        try:
            applied = cls._migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, applied)

    @staticmethod
    def _migrate(engine: Engine, target: str = "head") -> list[str]:
        """Upgrade to `target` (tests stop at older revisions to test the upgrades)."""
        config = _alembic_config()
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head() if target == "head" else target
        # One transaction, locked against a second council process migrating at the same time.
        with serialised(engine, _MIGRATE_LOCK) as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return []
            pending = [r.revision for r in script.iterate_revisions(head, current)]
            config.attributes["connection"] = conn
            command.upgrade(config, target)
        return list(reversed(pending))

    def close(self) -> None:
        self.engine.dispose()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- events ------------------------------------------------------------------------------

    def ingest(
        self,
        hub_id: str,
        records: Iterable[Mapping[str, JSONValue]],
        *,
        received_at: float | None = None,
        software_version: str | None = None,
        health: Mapping[str, JSONValue] | None = None,
        clock_offset_s: float | None = None,
        signed_at: float | None = None,
    ) -> IngestResult:
        """Store a batch once, in one transaction; re-sent or overlapping batches add nothing.

        Also records, in the same transaction, the hub's high water and count of events held,
        and its fleet figures: last contact, health report (only its known keys, checked:
        StoreError names a wrong field), clock offset and software version (the argument, else
        the report's), so the fleet view never shows a contact whose data is missing.

        Fleet figures change only when `signed_at` (the request's signed timestamp) is not
        older than the one they came from: a replayed or late-retried upload stores its
        events but cannot put old figures over newer ones. A report is merged: its keys
        replace the stored ones, the others stay (a report without `sensors` keeps them).
        """
        if len(hub_id) > 64:
            raise StoreError("hub id too long")
        now = now_or(received_at)
        rows = [row_for(hub_id, r, now) for r in records]
        report = None if health is None else validate_health(health)
        if software_version is None and report is not None:
            software_version = report.get("software_version")
        software_version = short_text(software_version, 64)
        fleet = _FleetFigures(
            now,
            report,
            software_version,
            None if clock_offset_s is None else finite(clock_offset_s),
            None if signed_at is None else finite(signed_at),
        )
        batch: dict[int, Row] = {}
        for row in rows:
            batch.setdefault(row[SEQ], row)  # the first copy in a batch wins
        corrections = clockfix.corrections_in(batch.values())  # checked before writing
        try:
            try:
                return self._store_batch(hub_id, batch, fleet, corrections, bulk=True)
            except _BulkInsertRefused:
                # A row the lookup said was not held was: impossible under the ingest lock,
                # unless a writer ignored it. The bulk transaction is rolled back whole; the
                # careful path redoes it with ON CONFLICT DO NOTHING, so the hub gets a
                # correct answer rather than an error.
                return self._store_batch(hub_id, batch, fleet, corrections, bulk=False)
        except (sa.exc.StatementError, ValueError) as exc:
            # The JSON serialiser refused NaN or infinity deep inside a health report:
            # SQLite's bind step wraps its ValueError in StatementError, psycopg's dumper lets
            # it through. (Records were encoded, and so checked, by row_for already.)
            cause = exc.orig if isinstance(exc, sa.exc.StatementError) else exc
            if isinstance(cause, ValueError) and "JSON" in str(cause):
                raise StoreError(f"malformed record: {cause}") from exc
            raise

    def _store_batch(
        self,
        hub_id: str,
        batch: dict[int, Row],
        fleet: _FleetFigures,
        corrections: list[clockfix.ClockCorrection],
        *,
        bulk: bool,
    ) -> IngestResult:
        """One ingest transaction under the ingest lock. `bulk`: insert the fresh rows with
        the engine's fastest path and no conflict clause (PostgreSQL: COPY, ~2.5x faster than
        executemany), trusting the lock; _BulkInsertRefused (after rollback) if that trust
        was wrong."""
        seqs = sorted(batch)
        with serialised(self.engine, _INGEST_LOCK) as conn:
            # Under the ingest lock nobody else writes events or fleet figures, so what is
            # read here is exact. Bodies come back only for seqs already held: none, unless
            # the hub is retrying.
            hub = conn.execute(_HUB_STATE.where(hubs.c.hub_id == hub_id)).first()
            if hub is None:
                raise StoreError(f"unknown hub {hub_id!r}")
            # High water is the highest seq held for the hub, kept in this same transaction:
            # seqs above it cannot be held, so a hub's newest events (every batch but those
            # of a catch-up, whose alerts went first) need no lookup. The careful path looks
            # every seq up, in case that figure was ever wrong.
            maybe_held = [s for s in seqs if s <= hub.high_water] if bulk else seqs
            stored = conn.execute(_held_query(conn, hub_id, maybe_held)).all() if maybe_held else []
            # Compared as the database gives it back: the body as stored, parsed. A re-sent
            # event whose wall time the hub has corrected since is the same event.
            conflicts: list[int] = []
            recorrected: list[Row] = []
            for seq, body in stored:
                old, new = decoded(body), json.loads(batch[seq][BODY])
                if same_json(old, new):
                    continue
                if not clockfix.same_event(old, new):
                    conflicts.append(seq)
                elif new.get("clock_corrected") is True:
                    recorrected.append(batch[seq])
            conflicts.sort()
            held_before = {seq for seq, _ in stored}
            fresh = [row for seq, row in batch.items() if seq not in held_before]
            values = _event_figures(fresh)
            if fleet.signed is None or hub.signed_at is None or fleet.signed >= hub.signed_at:
                values.update(fleet.changes(decoded(hub.health)))
            high_water, config_version = hub.high_water, hub.config_version
            if values:
                touch = (
                    hubs.update()
                    .where(hubs.c.hub_id == hub_id)
                    .values(values)
                    .returning(hubs.c.high_water, hubs.c.config_version)
                )
                high_water, config_version = conn.execute(touch).one()
            if fresh:
                _insert_rows(conn, fresh, bulk)
            clockfix.take_corrected(conn, hub_id, recorrected)
            if corrections:  # only what this batch newly stores: a replay changes nothing
                clockfix.apply(conn, hub_id, [c for c in corrections if c.seq not in held_before])
        refused = set(conflicts)
        return IngestResult(
            new=len(fresh),
            held=tuple(s for s in seqs if s not in refused),
            conflicts=tuple(conflicts),
            high_water=high_water,
            config_version=config_version,
        )

    def events_page(
        self,
        after: int,
        limit: int,
        hub_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> EventPage:
        """Up to `limit` events with id > `after` matching the filters, in ingest order.

        since <= wall_time < until. The newest visible id is read first and the page is cut at
        it, so `next_cursor` can move past rows the filters skipped (a client never rescans
        them) without passing a row that commits later: ids commit in order (module doc).
        `more` says a further page has matching rows visible now.
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        if kind is not None and kind not in KINDS:
            raise StoreError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        e = events.c
        with self.engine.connect() as conn:
            top = int(conn.scalar(sa.select(sa.func.max(e.id))) or 0)
            query = sa.select(events).where(e.id > after, e.id <= top).order_by(e.id)
            if hub_id is not None:
                query = query.where(e.hub_id == hub_id)
            if kind is not None:
                query = query.where(e.kind == kind)
            if since is not None:
                query = query.where(e.wall_time >= since)
            if until is not None:
                query = query.where(e.wall_time < until)
            rows = conn.execute(query.limit(limit + 1)).all()  # one extra row answers `more`
        more = len(rows) > limit
        page = [_event_from_row(row._asdict()) for row in rows[:limit]]
        next_cursor = page[-1].id if more else max(after, top)
        return EventPage(events=page, next_cursor=next_cursor, more=more)

    def iter_events(
        self,
        after: int = 0,
        hub_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page: int = 5000,
    ) -> Iterator[CouncilEvent]:
        """Every matching event after `after`, one page in memory at a time (for exports);
        ends at what was visible when the last page was read."""
        cursor = after
        while True:
            got = self.events_page(cursor, page, hub_id, kind, since, until)
            yield from got.events
            cursor = got.next_cursor
            if not got.more:
                return

    def events_after(
        self, cursor: int, limit: int, hub_id: str | None = None
    ) -> list[CouncilEvent]:
        """Up to `limit` events with id > cursor, in ingest order; the last id is the next
        cursor. Safe against concurrent ingests because ids commit in order (module doc)."""
        return self.events_page(cursor, limit, hub_id=hub_id).events

    def count_events(self, hub_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(events)
        if hub_id is not None:
            query = query.where(events.c.hub_id == hub_id)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    # -- fleet -------------------------------------------------------------------------------

    def fleet(self) -> list[FleetEntry]:
        """Every hub's entry, by hub id, read from the hubs table alone. Silence is judged at
        each hub's last report, not now, so a hub that went quiet shows as such by its
        last_contact, not by all its sensors turning silent."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_FLEET_COLUMNS).order_by(hubs.c.hub_id)).all()
        return [fleet_entry(row._asdict()) for row in rows]

    def fleet_entry(self, hub_id: str) -> FleetEntry | None:
        with self.engine.connect() as conn:
            query = sa.select(*_FLEET_COLUMNS).where(hubs.c.hub_id == hub_id)
            row = conn.execute(query).first()
        return None if row is None else fleet_entry(row._asdict())


# Everything fleet.fleet_entry reads (by name); never the key or the config.
_FLEET_COLUMNS = [c for c in hubs.c if c.name not in ("public_key", "config")]
# What ingest reads of the hub before deciding what to change.
_HUB_STATE = sa.select(hubs.c.health, hubs.c.signed_at, hubs.c.high_water, hubs.c.config_version)


def _event_figures(fresh: list[Row]) -> dict[str, Any]:
    """The hubs-row changes for newly stored rows: high water and events held."""
    if not fresh:
        return {}
    top = max(row[SEQ] for row in fresh)
    high = sa.case((hubs.c.high_water < top, top), else_=hubs.c.high_water)
    return {"high_water": high, "events_held": hubs.c.events_held + len(fresh)}


def _held_query(conn: Connection, hub_id: str, seqs: list[int]) -> sa.Select[tuple[int, Any]]:
    """The rows already held for these (sorted) seqs.

    PostgreSQL gets one array parameter: 500 separate IN parameters cost it ~90 ms a batch
    (measured), the array well under 1 ms. The redundant range on seq is for its planner:
    without fresh statistics (a growing table before autovacuum's ANALYZE) it scanned every
    row of the hub for `seq = ANY(...)`, 28 ms a batch at 40,000 rows (measured), whereas
    with the range it walks the (hub_id, seq) index: 0.4 ms, whatever the table's size."""
    if is_pg(conn):
        wanted = events.c.seq == sa.any_(sa.literal(seqs, postgresql.ARRAY(sa.BigInteger())))
    else:
        wanted = events.c.seq.in_(seqs)
    return sa.select(events.c.seq, events.c.body).where(
        events.c.hub_id == hub_id, events.c.seq.between(seqs[0], seqs[-1]), wanted
    )


class _BulkInsertRefused(Exception):
    """The bulk insert met a row already held (its transaction is rolled back)."""


_COLUMN_LIST = ", ".join(COLUMNS)
# Plain SQL with positional parameters, run through the driver with tuples: SQLAlchemy's
# per-row parameter processing of a Core insert costs more than the insert itself.
_SQLITE_INSERT = f"INSERT INTO events ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))})"
_PG_INSERT = "INSERT INTO events ({}) VALUES ({}) ON CONFLICT (hub_id, seq) DO NOTHING".format(
    _COLUMN_LIST, ", ".join("%s::jsonb" if c == "body" else "%s" for c in COLUMNS)
)
# Text format: the body goes in as its JSON text, which PostgreSQL parses into JSONB.
_PG_COPY = f"COPY events ({_COLUMN_LIST}) FROM STDIN"


def _insert_rows(conn: Connection, rows: list[Row], bulk: bool) -> None:
    """Insert rows known (under the ingest lock) not to be held. Unless `bulk`, the database
    still skips any that are (ON CONFLICT DO NOTHING): the careful path."""
    if not is_pg(conn):
        sql = _SQLITE_INSERT if bulk else f"{_SQLITE_INSERT} ON CONFLICT (hub_id, seq) DO NOTHING"
        try:
            conn.exec_driver_sql(sql, rows)
        except sa.exc.IntegrityError as exc:
            if not bulk:
                raise
            raise _BulkInsertRefused from exc
        return
    if not bulk:
        conn.exec_driver_sql(_PG_INSERT, rows)
        return
    # COPY has no conflict clause; it runs on the driver's connection, which is inside this
    # transaction and holds its advisory lock, so ids still commit in order.
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation as exc:
        raise _BulkInsertRefused from exc


def _event_from_row(row: dict[str, Any]) -> CouncilEvent:
    return CouncilEvent(**{**row, "body": decoded(row["body"])})

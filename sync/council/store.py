"""The council's store: one schema on SQLite (embedded default) and PostgreSQL (production).

Why it looks like this:
- Idempotency lives in the database, as UNIQUE (hub_id, seq) with ON CONFLICT DO NOTHING:
  a hub re-sends any batch whose acknowledgement it never saw, and the council must store it
  once, whichever connection or process gets there first.
- `events.id` is the council's ingest order, the pull API's cursor. A cursor is only safe if
  ids become visible in id order; ingests are therefore serialised (SQLite: BEGIN IMMEDIATE;
  PostgreSQL: a transaction-scoped advisory lock), otherwise a reader could see id 101 commit
  before id 100 and step past 100 for ever.
- The schema is created and upgraded by the Alembic revisions under `migrations/`, never by
  `create_all`, so both engines and every deployed council follow the same history.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

JSONValue = Any

MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary but fixed: the key of the PostgreSQL advisory locks this store takes.
_MIGRATE_LOCK = 0x4845_4152_5448_0001
_INGEST_LOCK = 0x4845_4152_5448_0002

metadata = sa.MetaData()

# SQLite only makes INTEGER PRIMARY KEY a rowid alias (and AUTOINCREMENT), not BIGINT.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

hubs = sa.Table(
    "hubs",
    metadata,
    sa.Column("hub_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),
    sa.Column("enrolled_at", sa.Float(), nullable=False),
    sa.Column("last_contact", sa.Float(), nullable=True),
    sa.Column("software_version", sa.String(64), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
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
    sa.Column("body", _Json, nullable=False),
    sa.UniqueConstraint("hub_id", "seq", name="uq_events_hub_seq"),
    sqlite_autoincrement=True,  # ids never reused, even after the newest row is deleted
)
sa.Index("ix_events_hub_id_id", events.c.hub_id, events.c.id)


class StoreError(Exception):
    """A batch the store refuses as a whole (unknown hub, malformed record)."""


@dataclass(frozen=True, slots=True)
class Hub:
    hub_id: str
    public_key: bytes
    enrolled_at: float
    last_contact: float | None
    software_version: str | None


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


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an upload achieved. `held` is every seq of the batch now stored (new or already
    there): exactly what the hub may mark synced. There is no "contiguous up to" figure on
    purpose: a hub's quota may drop routine readings, so its seqs legitimately have holes."""

    new: int
    held: tuple[int, ...]

    @property
    def duplicates(self) -> int:
        return len(self.held) - self.new


def _row_for(hub_id: str, record: Mapping[str, JSONValue], received_at: float) -> dict[str, Any]:
    try:
        seq = record["seq"]
        kind = record["kind"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise StoreError(f"seq must be a non-negative integer, got {seq!r}")
        if kind not in ("reading", "alert", "system"):
            raise StoreError(f"unknown kind {kind!r}")
        if seq >= 2**63:
            raise StoreError(f"seq out of range: {seq}")
        value = record.get("value") if kind == "reading" else None
        return {
            "hub_id": hub_id,
            "seq": seq,
            "kind": kind,
            "wall_time": _finite(record["wall_time"]),
            "clock_synced": bool(record["clock_synced"]),
            "monotonic": _finite(record["monotonic"]),
            "sensor_id": _short_text(record.get("sensor_id"), 128),
            "quantity": _short_text(record.get("quantity"), 32) if kind == "reading" else None,
            "value": None if value is None else _finite(value),
            "received_at": received_at,
            "body": dict(record),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"malformed record: {exc!r}") from exc


def _finite(value: JSONValue) -> float:
    """Engines disagree on NaN and infinity (PostgreSQL's JSONB refuses them): refuse both."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"not a finite number: {value!r}")
    return float(value)


def _short_text(value: JSONValue, limit: int) -> str | None:
    """A column bound checked here, so an over-long id is a refused batch, not a DB error."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise StoreError(f"not a string of at most {limit} characters: {value!r:.80}")
    return value


def _normalise_url(url: str) -> sa.URL:
    """`postgresql://` (what admins type) means psycopg 3, the only driver we ship."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database URL: {parsed.render_as_string()}")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("the council needs a SQLite file: sqlite:///path/to/council.db")
    return parsed


def _sqlite_engine(url: sa.URL) -> Engine:
    # Python's sqlite3 opens transactions lazily and never before DDL; take control so every
    # transaction (including migrations) is real and a writer can ask for BEGIN IMMEDIATE.
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: an acknowledged batch must survive the council host's power cut.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(str(conn.get_execution_options().get("sqlite_begin", "BEGIN")))

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class CouncilStore:
    """The council's database. Thread-safe: each call takes its own pooled connection."""

    def __init__(self, engine: Engine, applied: Sequence[str]) -> None:
        self.engine = engine
        self.applied_migrations: tuple[str, ...] = tuple(applied)  # by this open, oldest first

    @classmethod
    def open(cls, url: str) -> CouncilStore:
        """Connect and bring the schema to the newest revision (a no-op when it is)."""
        parsed = _normalise_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        try:
            applied = cls._migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, applied)

    @staticmethod
    def _migrate(engine: Engine) -> list[str]:
        config = _alembic_config()
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        # One transaction, locked against a second council process migrating at the same time.
        with _serialised(engine, _MIGRATE_LOCK) as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return []
            pending = [r.revision for r in script.iterate_revisions(head, current)]
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return list(reversed(pending))

    def close(self) -> None:
        self.engine.dispose()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- hubs --------------------------------------------------------------------------------

    def add_hub(
        self,
        hub_id: str,
        public_key: bytes,
        enrolled_at: float | None = None,
        software_version: str | None = None,
    ) -> None:
        """Register an enrolled hub; raises sqlalchemy.exc.IntegrityError if the id exists."""
        when = time.time() if enrolled_at is None else enrolled_at
        with self.engine.begin() as conn:
            conn.execute(
                hubs.insert().values(
                    hub_id=hub_id,
                    public_key=public_key,
                    enrolled_at=when,
                    software_version=software_version,
                )
            )

    def get_hub(self, hub_id: str) -> Hub | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(hubs).where(hubs.c.hub_id == hub_id)).one_or_none()
        return None if row is None else Hub(**row._asdict())

    # -- events ------------------------------------------------------------------------------

    def ingest(
        self,
        hub_id: str,
        records: Iterable[Mapping[str, JSONValue]],
        *,
        received_at: float | None = None,
        software_version: str | None = None,
    ) -> IngestResult:
        """Store a batch once, in one transaction; re-sent or overlapping batches add nothing.

        Also records the hub's last contact (and software version when given) in the same
        transaction, so the fleet view never shows a contact whose data is missing.
        """
        if len(hub_id) > 64:
            raise StoreError("hub id too long")
        now = time.time() if received_at is None else received_at
        rows = [_row_for(hub_id, r, now) for r in records]
        seqs = sorted({r["seq"] for r in rows})
        with _serialised(self.engine, _INGEST_LOCK) as conn:
            touch = hubs.update().where(hubs.c.hub_id == hub_id).values(last_contact=now)
            if software_version is not None:
                touch = touch.values(software_version=software_version)
            if conn.execute(touch).rowcount != 1:
                raise StoreError(f"unknown hub {hub_id!r}")
            # Under the ingest lock nobody else writes events, so what is already held is
            # exact; ON CONFLICT DO NOTHING stays as the database's own guarantee.
            held = set(conn.scalars(_held_query(conn, hub_id, seqs)))
            fresh: dict[int, dict[str, Any]] = {}
            for row in rows:
                if row["seq"] not in held:
                    fresh.setdefault(row["seq"], row)  # the first copy in a batch wins
            if fresh:
                conn.execute(_insert_ignoring_duplicates(conn), list(fresh.values()))
        return IngestResult(new=len(fresh), held=tuple(seqs))

    def events_after(
        self, cursor: int, limit: int, hub_id: str | None = None
    ) -> list[CouncilEvent]:
        """Up to `limit` events with id > cursor, in ingest order; the last id is the next
        cursor. Safe against concurrent ingests because ids commit in order (module doc)."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        query = sa.select(events).where(events.c.id > cursor).order_by(events.c.id).limit(limit)
        if hub_id is not None:
            query = query.where(events.c.hub_id == hub_id)
        with self.engine.connect() as conn:
            result = conn.execute(query).all()
        return [_event_from_row(row._asdict()) for row in result]

    def count_events(self, hub_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(events)
        if hub_id is not None:
            query = query.where(events.c.hub_id == hub_id)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)


@contextmanager
def _serialised(engine: Engine, lock: int) -> Iterator[Connection]:
    """A write transaction that runs alone: SQLite takes its write lock at BEGIN, PostgreSQL
    waits on an advisory lock released at commit or rollback."""
    with engine.connect().execution_options(sqlite_begin="BEGIN IMMEDIATE") as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
        yield conn


def _held_query(conn: Connection, hub_id: str, seqs: list[int]) -> sa.Select[tuple[int]]:
    """PostgreSQL gets one array parameter: 500 separate IN parameters cost it ~90 ms a batch
    (measured), the array well under 1 ms."""
    if conn.dialect.name == "postgresql":
        wanted = events.c.seq == sa.any_(sa.literal(seqs, postgresql.ARRAY(sa.BigInteger())))
    else:
        wanted = events.c.seq.in_(seqs)
    return sa.select(events.c.seq).where(events.c.hub_id == hub_id, wanted)


def _insert_ignoring_duplicates(conn: Connection) -> sa.Insert:
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(events).on_conflict_do_nothing(index_elements=["hub_id", "seq"])
    return stmt


def _event_from_row(row: dict[str, Any]) -> CouncilEvent:
    body = row["body"]
    if isinstance(body, str):  # a driver that hands JSON back as text
        body = json.loads(body)
    return CouncilEvent(**{**row, "body": body})

"""Engines and transactions for the council store, the same rules on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url


def now_or(now: float | None) -> float:
    """`now` when given (tests pin time), else the wall clock."""
    return time.time() if now is None else now


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def normalise_url(url: str) -> sa.URL:
    """`postgresql://` (what admins type) means psycopg 3, the only driver we ship."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database URL: {parsed.render_as_string()}")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("the council needs a SQLite file: sqlite:///path/to/council.db")
    return parsed


# NaN and infinity are not JSON; PostgreSQL refuses them and SQLite would store what no JSON
# reader accepts. Refusing them in the serialiser costs nothing extra: it runs anyway. One
# encoder, reused: json.dumps with any non-default option builds a new one per call (+40%).
_json_serializer = json.JSONEncoder(allow_nan=False).encode


def make_engine(url: str) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True, json_serializer=_json_serializer)


def sqlite_engine(url: sa.URL) -> Engine:
    # Python's sqlite3 opens transactions lazily and never before DDL; take control so every
    # transaction (including migrations) is real and a writer can ask for BEGIN IMMEDIATE.
    engine = sa.create_engine(url, connect_args={"timeout": 30}, json_serializer=_json_serializer)

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


@contextmanager
def serialised(engine: Engine, lock: int | None = None) -> Iterator[Connection]:
    """A write transaction. SQLite takes its write lock at BEGIN (so a writer waits its turn
    instead of failing to upgrade a read lock); PostgreSQL, given `lock`, also waits on that
    advisory lock, released at commit or rollback, so such transactions run one at a time."""
    with engine.connect().execution_options(sqlite_begin="BEGIN IMMEDIATE") as conn, conn.begin():
        if lock is not None and is_pg(conn):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
        yield conn


def decoded(value: Any) -> Any:
    """A JSON column's value; some drivers hand JSON back as text."""
    return json.loads(value) if isinstance(value, str) else value

"""Schema upgrades on both engines: a council running revision 0001 with data moves to 0002
keeping every row, and the per-hub figures 0002 adds are filled in from what it holds."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from sync.council.db import make_engine
from sync.council.store import CouncilStore, _alembic_config, metadata
from tests.test_council_store import HEAD, db_url, reading  # noqa: F401  (db_url: fixture)

# Revision 0001's tables, frozen here as the test's own copy, to write data as 0001 did.
V1 = sa.MetaData()
V1_HUBS = sa.Table(
    "hubs",
    V1,
    sa.Column("hub_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary()),
    sa.Column("enrolled_at", sa.Float()),
    sa.Column("last_contact", sa.Float()),
    sa.Column("software_version", sa.String(64)),
)
V1_EVENTS = sa.Table(
    "events",
    V1,
    sa.Column("id", sa.BigInteger(), primary_key=True),
    sa.Column("hub_id", sa.String(64)),
    sa.Column("seq", sa.BigInteger()),
    sa.Column("kind", sa.String(16)),
    sa.Column("wall_time", sa.Float()),
    sa.Column("clock_synced", sa.Boolean()),
    sa.Column("monotonic", sa.Float()),
    sa.Column("sensor_id", sa.String(128)),
    sa.Column("quantity", sa.String(32)),
    sa.Column("value", sa.Float()),
    sa.Column("received_at", sa.Float()),
    sa.Column("body", sa.JSON()),
)


def v1_database(url: str, keys: tuple[bytes, ...] = (b"a" * 32, b"b" * 32, b"c" * 32)) -> None:
    """A database at revision 0001 with three hubs (one never heard from) and their events."""
    engine = make_engine(url)
    CouncilStore._migrate(engine, "0001")
    hub_rows = [
        {"hub_id": "hub-a", "public_key": keys[0], "enrolled_at": 1.0, "last_contact": 50.0,
         "software_version": "0.4.0"},
        {"hub_id": "hub-b", "public_key": keys[1], "enrolled_at": 2.0, "last_contact": 60.0,
         "software_version": None},
        {"hub_id": "hub-c", "public_key": keys[2], "enrolled_at": 3.0, "last_contact": None,
         "software_version": None},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(V1_HUBS.insert(), hub_rows)
        for hub, seq in [("hub-a", s) for s in (1, 2, 3, 7)] + [("hub-b", 40)]:
            conn.execute(V1_EVENTS.insert().values(_event_row(hub, seq)))  # ids 1..5
    engine.dispose()


def _event_row(hub_id: str, seq: int) -> dict[str, Any]:
    record = reading(seq, value=float(seq))
    return {
        "hub_id": hub_id,
        "seq": seq,
        "kind": "reading",
        "wall_time": record["wall_time"],
        "clock_synced": True,
        "monotonic": record["monotonic"],
        "sensor_id": record["sensor_id"],
        "quantity": record["quantity"],
        "value": record["value"],
        "received_at": 10.0 + seq,
        "body": record,
    }


def downgraded(url: str, revision: str) -> Engine:
    """Downgrade the council database to `revision`; returns an engine on it (dispose it)."""
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    return engine


def test_upgrading_0001_keeps_every_row_and_fills_in_the_new_figures(db_url: str) -> None:  # noqa: F811
    v1_database(db_url)
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0002", "0003", "0004") and store.current_revision() == HEAD

    events = list(store.iter_events())
    assert [(e.id, e.hub_id, e.seq) for e in events] == [
        (1, "hub-a", 1), (2, "hub-a", 2), (3, "hub-a", 3), (4, "hub-a", 7), (5, "hub-b", 40),
    ]  # fmt: skip
    assert [e.body for e in events] == [reading(s, value=float(s)) for s in (1, 2, 3, 7, 40)]
    assert [e.received_at for e in events] == [11.0, 12.0, 13.0, 17.0, 50.0]

    hub = store.get_hub("hub-a")
    assert hub is not None
    assert (hub.public_key, hub.enrolled_at, hub.last_contact) == (b"a" * 32, 1.0, 50.0)
    assert (hub.software_version, hub.name, hub.config, hub.config_version) == (
        "0.4.0",
        None,
        {},
        0,  # never configured by the council
    )
    figures = {e.hub_id: (e.high_water, e.events_held, e.last_contact) for e in store.fleet()}
    assert figures == {"hub-a": (7, 4, 50.0), "hub-b": (40, 1, 60.0), "hub-c": (0, 0, None)}

    # It goes on as if it had always been 0002: idempotent on old rows, new ids after old ones.
    again = store.ingest("hub-a", [reading(2, value=2.0), reading(3, value=0.0), reading(8)])
    assert (again.new, again.held, again.conflicts, again.high_water) == (1, (2, 8), (3,), 8)
    assert [e.id for e in store.iter_events(after=5)] == [6]
    assert store.set_hub_config("hub-a", {"x": {}}).config_version == 1
    code = store.create_code(60)
    assert store.enroll_hub(code.code, b"d" * 32, None, None).config_version == 1
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.close()


def test_an_upgrade_that_cannot_apply_changes_nothing(db_url: str) -> None:  # noqa: F811
    # 0001 let two hubs share a key; 0002 makes one key one hub and says what to fix.
    v1_database(db_url, keys=(b"k" * 32, b"k" * 32, b"c" * 32))
    with pytest.raises(RuntimeError, match="more than one hub"):
        CouncilStore.open(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version", "hubs", "events"}
        assert [c["name"] for c in sa.inspect(conn).get_columns("hubs")] == list(V1_HUBS.c.keys())
        assert conn.scalar(sa.select(sa.func.count()).select_from(V1_EVENTS)) == 5
    engine.dispose()


def test_0002_downgrades_to_0001_and_upgrades_again(db_url: str) -> None:  # noqa: F811
    store = CouncilStore.open(db_url)
    store.add_hub("hub-a", b"a" * 32)
    store.ingest("hub-a", [reading(1), reading(2)])
    store.close()
    engine = downgraded(db_url, "0001")
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version", "hubs", "events"}
        assert [c["name"] for c in sa.inspect(conn).get_columns("hubs")] == list(V1_HUBS.c.keys())
    engine.dispose()
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0002", "0003", "0004")
    assert [e.seq for e in store.iter_events()] == [1, 2]
    assert store.fleet_entry("hub-a").high_water == 2  # type: ignore[union-attr]
    store.close()


def test_0003_adds_the_signed_time_of_the_fleet_figures_and_downgrades(db_url: str) -> None:  # noqa: F811
    engine = make_engine(db_url)
    assert CouncilStore._migrate(engine, "0002") == ["0001", "0002"]
    engine.dispose()
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0003", "0004")
    store.add_hub("hub-a", b"a" * 32)
    store.ingest("hub-a", [reading(1)], received_at=10.0, signed_at=9.0)
    store.close()
    engine = downgraded(db_url, "0002")
    with engine.connect() as conn:
        assert "signed_at" not in [c["name"] for c in sa.inspect(conn).get_columns("hubs")]
    engine.dispose()
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0003", "0004")
    entry = store.fleet_entry("hub-a")
    assert entry is not None and entry.last_contact == 10.0
    # NULL after the upgrade: the next upload, whatever its time, updates the figures.
    store.ingest("hub-a", [], received_at=11.0, signed_at=1.0)
    assert store.fleet_entry("hub-a").last_contact == 11.0  # type: ignore[union-attr]
    store.close()

"""Issue 6 item 7, end to end: the council's answer dates the hub's boot, the hub corrects
what it stamped before its clock was synchronised, and the council corrects what it already
held, once, whatever is replayed. The real uploader and the real council over loopback, on
SQLite and PostgreSQL; the hub's clock is faked at the edge (tests.test_clock_correction)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from hub.events import Event, Quantity, Reading, Stamp, StoredEvent, SystemEvent, SystemKind
from hub.store import Store
from provisioning.council_cmd import council_app
from sync.client import make_http_client
from sync.codec import MAGIC, VERSION, BatchError, decode_batch, encode_batch
from sync.council.db import make_engine
from sync.council.store import CouncilEvent, CouncilStore, metadata
from sync.protocol import EVENTS_PATH, UploadAck
from tests.council_server import SignedHub, running_council
from tests.test_clock_correction import DAY, EdgeClock, readings, stamped_alert
from tests.test_council_store_upgrade import V1_EVENTS, V1_HUBS, downgraded
from tests.test_uploader_council import uploader_for

ORIGIN = 1_764_316_000.0
BAD = -40 * DAY  # how wrong the hub's wall clock is before any sync


@pytest.fixture
def db_url(council_db_on_each_engine: str) -> str:
    return council_db_on_each_engine


def council_rows(store: CouncilStore, hub_id: str) -> dict[int, CouncilEvent]:
    return {e.seq: e for e in store.iter_events(hub_id=hub_id)}


def unsynced(seq: int, mono: float, value: float = 20.0) -> tuple[int, Event]:
    stamp = Stamp(ORIGIN + mono + BAD, False, mono)
    return seq, Reading("lounge", Quantity.TEMPERATURE, value, stamp)


def corrected(event: tuple[int, Event], origin: float = ORIGIN) -> tuple[int, Event]:
    seq, ev = event
    st = ev.stamp
    return seq, replace(ev, stamp=Stamp(origin + st.monotonic, False, st.monotonic, True))


def correction(seq: int, ranges: list[list[int]], origin: float = ORIGIN) -> tuple[int, Event]:
    details = {"boot_id": "b", "origin": origin, "source": "council", "seq_ranges": ranges}
    stamp = Stamp(origin + 500.0, False, 500.0, True)
    return seq, SystemEvent(SystemKind.CLOCK_CORRECTED, details, stamp)


def post(hub: SignedHub, events: list[tuple[int, Event]]) -> UploadAck:
    answer = hub.post(hub.batch(events))
    assert answer.status_code == 200, answer.text
    return UploadAck.model_validate(answer.json())


def seqs_of(ranges: Any) -> list[int]:
    return [s for first, last in ranges for s in range(first, last + 1)]


# -- through the real uploader ---------------------------------------------------------------


def test_the_councils_answer_corrects_the_hub_and_the_council_corrects_what_it_held(
    db_url: str, tmp_path: Path
) -> None:
    with running_council(db_url) as council:
        hub_id, identity = council.enroll(tmp_path / "key")
        clock = EdgeClock("boot-real", error=BAD, real=True)  # NTP never syncs
        store = Store.open(tmp_path / "hub.db", clock=clock)
        first = store.commit([*readings(clock, 5), stamped_alert(clock), *readings(clock, 3)])
        as_stamped = {e.seq: e.event.stamp for e in store.events()}

        async def drain() -> None:
            async with make_http_client(ca_bundle=None, timeout_s=10.0) as http:
                report = await uploader_for(
                    council.url,
                    store,
                    hub_id,
                    identity,
                    http,
                    clock,  # type: ignore[arg-type]
                ).drain()
                assert report.ok, report.error

        asyncio.run(drain())  # the first answer reveals the origin; these went uncorrected
        hub = {e.seq: e for e in store.events()}
        held = council_rows(council.store, hub_id)
        (report,) = [e for e in hub.values() if isinstance(e.event, SystemEvent)]
        assert isinstance(report.event, SystemEvent)
        assert report.event.kind is SystemKind.CLOCK_CORRECTED
        assert report.event.details["seq_ranges"] == [[first[0], first[-1]]]
        origin = report.event.details["origin"]
        # The estimate is the council's clock (this machine's) less one loopback latency:
        # far closer than the 40 days the hub's clock was out.
        assert abs(origin - clock.origin) < 60.0
        for seq in first:
            hub_stamp = hub[seq].event.stamp
            row = held[seq]
            assert hub_stamp == Stamp(
                origin + hub_stamp.monotonic, False, hub_stamp.monotonic, True
            )
            assert (row.wall_time, row.clock_synced, row.clock_corrected) == (
                hub_stamp.wall_time,
                False,
                True,
            )
            # The body stays as the hub first sent it.
            assert row.body["wall_time"] == as_stamped[seq].wall_time
            assert "clock_corrected" not in row.body
        assert held[report.seq].clock_corrected  # the report itself went corrected

        # From now on stamps leave corrected: no further report is needed.
        later = store.commit(readings(clock, 4))
        asyncio.run(drain())
        held = council_rows(council.store, hub_id)
        for seq in later:
            row = held[seq]
            assert row.clock_corrected and row.body["clock_corrected"] is True
            assert row.wall_time == row.body["wall_time"] == origin + row.monotonic
        kinds = [e.body.get("system") for e in held.values() if e.kind == "system"]
        assert kinds.count("clock_corrected") == 1

        # The council's cursor order is the hub's seq order (alerts first), never wall time.
        order = [e.seq for e in council.store.iter_events(hub_id=hub_id)]
        readings_order = [s for s in order if held[s].kind == "reading"]
        assert readings_order == sorted(readings_order)

        # The pull API and the export both say which wall times were corrected.
        token = council.store.create_token("reader", "analyst").token
        page = council.client(token).get(EVENTS_PATH, params={"hub": hub_id}).json()
        assert {e["seq"]: e["clock_corrected"] for e in page["events"]} == {s: True for s in held}
        store.close()


# -- the council's side, by hand-made batches --------------------------------------------------


def test_corrections_at_the_council_are_absolute_and_never_applied_twice(
    db_url: str, tmp_path: Path
) -> None:
    with running_council(db_url) as council:
        hub = council.enroll_hub(tmp_path / "key")
        first = [unsynced(1, 10.0), unsynced(2, 20.0), unsynced(3, 30.0)]
        post(hub, first)

        post(hub, [correction(4, [[1, 2]])])
        rows = council_rows(council.store, hub.hub_id)
        assert [(rows[s].wall_time, rows[s].clock_corrected) for s in (1, 2, 3)] == [
            (ORIGIN + 10.0, True),
            (ORIGIN + 20.0, True),
            (ORIGIN + 30.0 + BAD, False),  # not in the ranges
        ]
        # A replay of the correction: held, applied no second time.
        again = post(hub, [correction(4, [[1, 2]])])
        assert (again.new, seqs_of(again.held)) == (0, [4])
        # A second correction over the same rows with the same origin: no shift either.
        post(hub, [correction(5, [[1, 3]])])
        rows = council_rows(council.store, hub.hub_id)
        assert [rows[s].wall_time for s in (1, 2, 3)] == [
            ORIGIN + 10.0,
            ORIGIN + 20.0,
            ORIGIN + 30.0,
        ]

        # Re-sent after the hub corrected them (their acknowledgement was lost): the same
        # events, not conflicts; an uncorrected late copy changes nothing either.
        resent = post(hub, [corrected(first[0]), first[1]])
        assert (resent.new, seqs_of(resent.held), resent.conflicts) == (0, [1, 2], [])
        rows = council_rows(council.store, hub.hub_id)
        assert [rows[s].wall_time for s in (1, 2)] == [ORIGIN + 10.0, ORIGIN + 20.0]

        # Stored uncorrected, re-sent corrected: the row takes the corrected time.
        post(hub, [unsynced(6, 60.0)])
        post(hub, [corrected(unsynced(6, 60.0))])
        row = council_rows(council.store, hub.hub_id)[6]
        assert (row.wall_time, row.clock_corrected) == (ORIGIN + 60.0, True)
        assert row.body["wall_time"] == ORIGIN + 60.0 + BAD  # the body as first received

        # Other content under a held seq is still a conflict, corrected or not.
        other = post(hub, [corrected(unsynced(3, 30.0, value=99.0))])
        assert other.conflicts and seqs_of(other.conflicts) == [3]

        # A stamp that was synchronised is never touched by a correction.
        synced = Reading("lounge", Quantity.TEMPERATURE, 1.0, Stamp(ORIGIN + 70.0, True, 70.0))
        post(hub, [(7, synced), correction(8, [[1, 7]], origin=ORIGIN + 1000.0)])
        rows = council_rows(council.store, hub.hub_id)
        assert (rows[7].wall_time, rows[7].clock_corrected) == (ORIGIN + 70.0, False)
        # ... and a newer origin (a better source) sets every unsynced row absolutely.
        assert [rows[s].wall_time for s in (1, 2, 3, 6)] == [
            ORIGIN + 1000.0 + m for m in (10.0, 20.0, 30.0, 60.0)
        ]
        # A late replay of an older correction does not bring its origin back.
        post(hub, [correction(4, [[1, 2]])])
        rows = council_rows(council.store, hub.hub_id)
        assert [rows[s].wall_time for s in (1, 2)] == [ORIGIN + 1010.0, ORIGIN + 1020.0]


@pytest.mark.parametrize(
    "details",
    [
        {"origin": "soon", "seq_ranges": [[1, 1]]},
        {"origin": -5.0, "seq_ranges": [[1, 1]]},
        {"origin": ORIGIN, "seq_ranges": [[2, 1]]},
        {"origin": ORIGIN, "seq_ranges": [[0, 1]]},
        {"origin": ORIGIN, "seq_ranges": [[1, 2, 3]]},
        {"origin": ORIGIN, "seq_ranges": "1-3"},
        {"origin": ORIGIN},
    ],
)
def test_a_malformed_correction_is_refused_and_changes_nothing(
    council_db_url: str, tmp_path: Path, details: dict[str, Any]
) -> None:
    with running_council(council_db_url) as council:
        hub = council.enroll_hub(tmp_path / "key")
        post(hub, [unsynced(1, 10.0)])
        bad = SystemEvent(SystemKind.CLOCK_CORRECTED, details, Stamp(ORIGIN, False, 5.0))
        answer = hub.post(hub.batch([(2, bad), unsynced(3, 30.0)]))
        assert answer.status_code == 422, answer.text
        assert "clock_corrected" in answer.json()["detail"]
        rows = council_rows(council.store, hub.hub_id)
        assert list(rows) == [1] and rows[1].wall_time == ORIGIN + 10.0 + BAD


def test_the_export_says_which_wall_times_were_corrected(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'council.db'}"
    store = CouncilStore.open(db)
    hub_id = store.enroll_hub(store.create_code(600.0).code, b"a" * 32, "a", None).hub_id
    records = [
        {"seq": 1, "kind": "reading", "wall_time": 5.0, "clock_synced": False, "monotonic": 5.0,
         "sensor_id": "s", "quantity": "temperature", "value": 1.0, "unit": "°C"},
        {"seq": 2, "kind": "reading", "wall_time": ORIGIN + 6.0, "clock_synced": False,
         "clock_corrected": True, "monotonic": 6.0, "sensor_id": "s",
         "quantity": "temperature", "value": 1.0, "unit": "°C"},
    ]  # fmt: skip
    store.ingest(hub_id, records)
    store.close()
    runner = CliRunner()
    as_csv = runner.invoke(council_app, ["export", "--db", db, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["clock_corrected"] for r in rows] == ["false", "true"]
    as_jsonl = runner.invoke(council_app, ["export", "--db", db, "--format", "jsonl"])
    lines = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert [r["clock_corrected"] for r in lines] == [False, True]


# -- the wire ----------------------------------------------------------------------------------


def _with_flags(body: bytes, flags: int) -> bytes:
    """`body` (one event of hub "h", empty health) with its flags byte replaced."""
    payload = bytearray(zlib.decompress(body[6:]))
    assert payload[:6] == b"\x01h\x02{}\x01"
    payload[6] = flags
    return MAGIC + bytes((VERSION, 1)) + zlib.compress(bytes(payload))


def test_the_corrected_bit_travels_and_a_stamp_cannot_be_both() -> None:
    body = encode_batch("h", [StoredEvent(*unsynced(1, 10.0))], {})
    assert decode_batch(_with_flags(body, 0)).events[0].event.stamp.clock_corrected is False
    stamp = decode_batch(_with_flags(body, 8)).events[0].event.stamp
    assert (stamp.clock_synced, stamp.clock_corrected) == (False, True)
    with pytest.raises(BatchError, match="synchronised and corrected"):
        decode_batch(_with_flags(body, 4 | 8))
    with pytest.raises(BatchError, match="flags"):
        decode_batch(_with_flags(body, 16))


# -- the council's schema ----------------------------------------------------------------------


def test_a_council_at_0003_upgrades_to_0004_keeping_every_row(db_url: str) -> None:
    engine = make_engine(db_url)
    CouncilStore._migrate(engine, "0003")
    with engine.begin() as conn:
        conn.execute(V1_HUBS.insert().values(hub_id="hub-a", public_key=b"a" * 32, enrolled_at=1.0))
        for seq in (1, 2):
            record = {"seq": seq, "kind": "reading", "wall_time": 5.0 + seq,
                      "clock_synced": False, "monotonic": float(seq)}  # fmt: skip
            row = {**record, "hub_id": "hub-a", "received_at": 9.0, "body": record}
            conn.execute(V1_EVENTS.insert().values(row))
    engine.dispose()
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0004",)
    assert [(e.seq, e.wall_time, e.clock_corrected) for e in store.iter_events()] == [
        (1, 6.0, False),
        (2, 7.0, False),
    ]
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    # Old rows are corrected like any other.
    store.ingest(
        "hub-a",
        [{"seq": 3, "kind": "system", "wall_time": 1.0, "clock_synced": False, "monotonic": 3.0,
          "system": "clock_corrected",
          "details": {"origin": ORIGIN, "seq_ranges": [[1, 2]], "boot_id": "b",
                      "source": "ntp"}}],
    )  # fmt: skip
    assert [e.wall_time for e in store.iter_events()][:2] == [ORIGIN + 1.0, ORIGIN + 2.0]
    store.close()

    engine = downgraded(db_url, "0003")
    with engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("events")]
        assert "clock_corrected" not in columns
        assert conn.scalar(sa.select(sa.func.count()).select_from(V1_EVENTS)) == 3
    engine.dispose()
    store = CouncilStore.open(db_url)
    assert store.applied_migrations == ("0004",)
    assert not any(e.clock_corrected for e in store.iter_events())
    store.close()

"""Replay: the three formats, merging, inference, pacing, and the virtual clock it runs on.

The real-data test uses the Open Smart Home Data Set (Fraunhofer IBP, CC BY-SA 4.0) from
../shared/data/open-smart-home; it is read in place, never copied into the repo.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import ReadingSource
from drivers.replay import (
    ReplaySource,
    casas,
    describe,
    detect_format,
    expand_paths,
    first_timestamp,
    jsonl,
    replay_clock,
    series,
    slug,
)
from drivers.replay.infer import SensorIds, role_from_name
from drivers.replay.records import SensorKey
from hub.clock import SimulatedClock, SystemClock, VirtualClock
from hub.config import RoomRole, SensorConfig, SensorKind
from hub.events import (
    Alert,
    AlertState,
    Event,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)

FIXTURE = Path(__file__).parent / "fixtures" / "casas_sample.txt"
OPEN_SMART_HOME = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-smart-home"
LONDON = ZoneInfo("Europe/London")
SENSOR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # hub.config's pattern


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def utc(*parts: int) -> float:
    """Unix time of a UTC date and time given as (year, month, day, hour, minute, s, µs)."""
    year, month, day, hour, minute, second, micro = (*parts, 0, 0, 0, 0)[:7]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).timestamp()


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


async def replay_all(source: ReplaySource) -> list[Reading]:
    readings: list[Reading] = []
    await source.run(readings.append)
    return readings


def replay_fast(paths: list[Path], fmt: str = "auto", tz: str = "Europe/London") -> ReplaySource:
    clock = replay_clock(paths, fmt, None, tz)
    assert isinstance(clock, VirtualClock) and clock.wall() == first_timestamp(paths, fmt, tz)
    return ReplaySource(paths, fmt, clock, None, tz)


# --- the virtual clock ----------------------------------------------------------------------


def test_virtual_clock_wakes_sleepers_in_time_order_without_real_waiting() -> None:
    async def scenario() -> list[tuple[str, float]]:
        clock = VirtualClock(1000.0)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, *sleeps: float) -> None:
            for seconds in sleeps:
                await clock.sleep(seconds)
                woke.append((name, clock.wall() - 1000.0))

        tasks = [
            asyncio.create_task(sleeper("a", 10)),
            asyncio.create_task(sleeper("b", 5, 10)),  # wakes at 5, sleeps again, wakes at 15
            asyncio.create_task(sleeper("c", 7)),
            asyncio.create_task(sleeper("d", 7)),  # same deadline as c, asleep after it
            asyncio.create_task(sleeper("e", 3600)),  # a real hour: must not hold anyone up
        ]
        await asyncio.sleep(0)  # let them all go to sleep
        await clock.advance_to(1020.0)
        assert clock.wall() == 1020.0
        assert not tasks[4].done()
        await clock.advance(3600)
        await asyncio.gather(*tasks)
        return woke

    woke = run(scenario())
    assert woke == [("b", 5), ("c", 7), ("d", 7), ("a", 10), ("b", 15), ("e", 3600)]


def test_virtual_clock_only_moves_when_advanced_and_never_back() -> None:
    async def scenario() -> None:
        clock = VirtualClock(50.0)
        assert clock.stamp() == Stamp(50.0, True, 0.0)
        task = asyncio.create_task(clock.sleep(10))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and clock.wall() == 50.0
        assert clock.next_deadline() == 60.0
        await clock.advance_to(59.5)
        assert not task.done()
        await clock.advance_to(60.0)
        await asyncio.sleep(0)
        assert task.done()
        await clock.advance_to(10.0)  # the past: nothing moves
        assert clock.wall() == 60.0 and clock.monotonic() == 10.0
        await clock.sleep(0)  # a zero sleep returns at once
        assert clock.next_deadline() is None

    run(scenario())


def test_virtual_clock_skips_cancelled_sleepers() -> None:
    async def scenario() -> list[str]:
        clock = VirtualClock(0.0)
        woke: list[str] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(name)

        gone = asyncio.create_task(sleeper("gone", 1))
        stays = asyncio.create_task(sleeper("stays", 2))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert clock.next_deadline() == 2.0
        await clock.advance_to(5.0)
        await stays
        return woke

    assert run(scenario()) == ["stays"]


# --- CASAS ----------------------------------------------------------------------------------


D = "2010-11-04 "  # the date part of the lines below


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (D + "00:03:50.209589 M003 Bed ON Sleep_begin", ("M003", "Bed", "Sleep_begin", 209589)),
        (D + "00:03:50 M003 OFF", ("M003", None, None, 0)),
        ("  2010-11-04\t00:03:50.5   M003\t\tBed   ON  ", ("M003", "Bed", None, 500000)),
        (D + "00:03:50.1 M003 ON Sleep begin", ("M003", None, "Sleep begin", 100000)),
        (D + "00:03:50.1 M003 Living Room on", ("M003", "Living Room", None, 100000)),
        (D + "09:00:01.25 D001 FrontDoor OPEN", ("D001", "FrontDoor", None, 250000)),
        (D + "09:00:01 D001 CLOSE Leave_Home", ("D001", None, "Leave_Home", 0)),
        (D + "09:00:01 D001 FrontDoor CLOSED", ("D001", "FrontDoor", None, 0)),
        (D + "09:00:01 T001 Kitchen 21.5", ("T001", "Kitchen", None, 0)),
        (D + "09:00:01 T001 -3", ("T001", None, None, 0)),
        (D + "09:00:01 LS005 Lounge 312", ("LS005", "Lounge", None, 0)),
        ("2010-11-04T09:00:01.123456789 M003 ON", ("M003", None, None, 123456)),
    ],
)
def test_casas_line_variants(line: str, expected: tuple[str, str | None, str | None, int]) -> None:
    parsed = casas.parse_line(line)
    assert (parsed.sensor, parsed.location, parsed.label, parsed.local.microsecond) == expected
    assert parsed.local.replace(microsecond=0) in (
        datetime(2010, 11, 4, 0, 3, 50),
        datetime(2010, 11, 4, 9, 0, 1),
    )


@pytest.mark.parametrize(
    ("value", "quantity", "number"),
    [
        ("M003 ON", Quantity.MOTION, 1.0),
        ("M003 off", Quantity.MOTION, 0.0),
        ("D001 OPEN", Quantity.CONTACT, 1.0),
        ("D001 CLOSE", Quantity.CONTACT, 0.0),
        ("D001 Closed", Quantity.CONTACT, 0.0),
        ("T001 21.5", Quantity.TEMPERATURE, 21.5),
        ("T001 -3", Quantity.TEMPERATURE, -3.0),
        ("LS005 312", Quantity.ILLUMINANCE, 312.0),
    ],
)
def test_casas_values_become_quantities(value: str, quantity: Quantity, number: float) -> None:
    parsed = casas.parse_line(D + "09:00:01 " + value)
    assert (parsed.quantity, parsed.value) == (quantity, number)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2010-11-04 00:03:50 M003", "too few fields"),
        ("", "too few fields"),
        ("M003 Bed ON 2010-11-04", "does not start with a date and time"),
        ("2010-11-04 00:03 M003 Bed ON", "does not start with a date and time"),
        ("2010-02-30 00:03:50 M003 Bed ON", "not a real date"),
        ("2010-11-04 25:03:50 M003 Bed ON", "not a real date"),
        ("2010-11-04 00:03:50 M003 Bed DIM", "no value after the sensor"),
        ("2010-11-04 00:03:50 M003 Bed Room Left Corner ON", "no value after the sensor"),
        ("2010-11-04 00:03:50 T001 Kitchen 480", "not a plausible temperature"),
        ("2010-11-04 00:03:50 LS001 Hall -5", "not a plausible illuminance"),
    ],
)
def test_casas_bad_lines_say_why(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        casas.parse_line(line)


def test_casas_fixture_replays_valid_lines_and_reports_bad_ones_by_file_and_line() -> None:
    source = replay_fast([FIXTURE], "casas")
    readings = run(replay_all(source))
    stats = source.stats
    assert stats.lines_read == 34
    assert stats.bad_lines == 6 and stats.bad_files == 0
    assert stats.readings_emitted == len(readings) == 34 - 6 - 1  # one blank line
    bad_at = [int(example.split(":")[1]) for example in stats.examples]
    assert bad_at == [21, 23, 24, 25, 26, 27]
    assert all(example.startswith(f"{FIXTURE}:") for example in stats.examples)
    assert "480 is not a plausible temperature" in stats.examples[4]
    # June is BST (UTC+1): local 00:02:11.402117 is 23:02:11.402117 UTC the day before.
    first, last = readings[0], readings[-1]
    assert first == Reading(
        "m021-bedroom",
        Quantity.MOTION,
        1.0,
        Stamp(utc(2011, 6, 14, 23, 2, 11, 402117), True, 0.0),
    )
    assert (last.sensor_id, last.stamp.wall_time) == (
        "m021-bedroom",
        utc(2011, 6, 15, 22, 58, 59, 999999),
    )
    by_line = {r.stamp.wall_time: r for r in readings}
    assert by_line[utc(2011, 6, 15, 6, 3, 44, 300000)].sensor_id == "d002-kitchen"
    lounge = by_line[utc(2011, 6, 15, 8, 10, 42, 118000)]
    assert (lounge.sensor_id, lounge.quantity, lounge.value) == (
        "ls005-lounge",
        Quantity.ILLUMINANCE,
        312.0,
    )
    times = [r.stamp.wall_time for r in readings]
    assert times == sorted(times)
    assert stats.out_of_order == 0


def test_casas_local_times_follow_the_hub_timezone() -> None:
    line = "2011-01-15 12:00:00 M001 Kitchen ON"
    assert casas.to_unix(casas.parse_line(line).local, LONDON, 0.0)[0] == utc(2011, 1, 15, 12)
    new_york = ZoneInfo("America/New_York")
    assert casas.to_unix(casas.parse_line(line).local, new_york, 0.0)[0] == utc(2011, 1, 15, 17)


def test_casas_clock_changes_never_crash_and_keep_the_log_in_order(tmp_path: Path) -> None:
    log = write(
        tmp_path / "dst.txt",
        # Clocks go back at 02:00 BST on 2017-10-29: 01:00-01:59 happens twice.
        "2017-10-29 00:50:00 M001 Hall ON",
        "2017-10-29 01:10:00 M001 Hall OFF",  # first time round (BST)
        "2017-10-29 01:40:00 M001 Hall ON",
        "2017-10-29 01:05:00 M001 Hall OFF",  # earlier than the line before: second time (GMT)
        "2017-10-29 01:30:00 M001 Hall ON",
        "2017-10-29 02:10:00 M001 Hall OFF",
        # Clocks go forward at 01:00 GMT on 2018-03-25: 01:00-01:59 never happens.
        "2018-03-25 00:59:00 M001 Hall ON",
        "2018-03-25 01:30:00 M001 Hall OFF",
        "2018-03-25 02:10:00 M001 Hall ON",
    )
    source = replay_fast([log], "casas")
    readings = run(replay_all(source))
    assert [r.stamp.wall_time for r in readings] == [
        utc(2017, 10, 28, 23, 50),
        utc(2017, 10, 29, 0, 10),
        utc(2017, 10, 29, 0, 40),
        utc(2017, 10, 29, 1, 5),
        utc(2017, 10, 29, 1, 30),
        utc(2017, 10, 29, 2, 10),
        utc(2018, 3, 25, 0, 59),
        utc(2018, 3, 25, 1, 0),  # the moment the clocks changed
        utc(2018, 3, 25, 1, 10),
    ]
    stats = source.stats
    assert (stats.dst_ambiguous, stats.dst_nonexistent, stats.bad_lines) == (4, 1, 0)
    assert stats.out_of_order == 0
    assert any("happened twice" in note for note in stats.notes)
    assert any("never happened" in note and "dst.txt:8" in note for note in stats.notes)


# --- per-sensor series ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "room", "quantity", "outdoor"),
    [
        ("Bathroom_Humidity.csv", "Bathroom", Quantity.HUMIDITY, False),
        ("Kitchen_Brightness.csv", "Kitchen", Quantity.ILLUMINANCE, False),
        ("Room1_Temperature.csv", "Room1", Quantity.TEMPERATURE, False),
        ("Room2_OutdoorTemperature.csv", "Room2", Quantity.TEMPERATURE, True),
        ("Living_Room_CO2.tsv", "Living_Room", Quantity.CO2, False),
        ("Hall_Motion.csv", "Hall", Quantity.MOTION, False),
    ],
)
def test_series_quantity_and_room_come_from_the_file_name(
    name: str, room: str, quantity: Quantity, outdoor: bool
) -> None:
    assert series.parse_name(Path("/data") / name) == (room, quantity, outdoor)


@pytest.mark.parametrize(
    ("name", "reason"), [("readings.csv", "does not say"), ("Hall_Noise.csv", "not a quantity")]
)
def test_series_file_names_that_say_nothing_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        series.parse_name(name)


def test_series_bad_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Bathroom_Humidity.csv",
        "1489017527\t47",
        "1489018733\t48\textra",
        "1489019335\tdamp",
        "1489019935\t130",
        "1489019935000\t50",  # milliseconds
        "1489020535\tnan",
        "",
        "  1489021135 \t 91.5 ",
    )
    source = replay_fast([path], "series")
    readings = run(replay_all(source))
    assert [(r.stamp.wall_time, r.value) for r in readings] == [
        (1489017527.0, 47.0),
        (1489021135.0, 91.5),
    ]
    assert {r.sensor_id for r in readings} == {"bathroom-climate"}
    assert {r.quantity for r in readings} == {Quantity.HUMIDITY}
    examples = source.stats.examples
    assert [e.split(":")[1] for e in examples] == ["2", "3", "4", "5", "6"]
    assert "expected 2 fields" in examples[0]
    assert "must both be numbers" in examples[1]
    assert "130 is not a plausible humidity" in examples[2]
    assert "not Unix seconds" in examples[3]
    assert "not a finite number" in examples[4]
    assert source.stats.lines_read == 8 and source.stats.bad_lines == 5


def test_series_outdoor_files_are_not_replayed_and_say_so(tmp_path: Path) -> None:
    outdoor = write(tmp_path / "Room2_OutdoorTemperature.csv", "1489017527\t-2.5")
    indoor = write(tmp_path / "Room2_Temperature.csv", "1489017527\t19.5")
    source = replay_fast([outdoor, indoor], "series")
    readings = run(replay_all(source))
    assert [(r.sensor_id, r.value) for r in readings] == [("room2-climate", 19.5)]
    assert any("Room2_OutdoorTemperature.csv: outdoor" in note for note in source.stats.notes)
    assert any("outdoor" in line for line in source.describe_inferred())


# --- the hub's own export -------------------------------------------------------------------


def export_lines() -> list[str]:
    def stamp(t: float, synced: bool = True) -> Stamp:
        return Stamp(1_764_316_800.0 + t, synced, t)

    events: list[Event] = [
        Reading("bedroom-motion", Quantity.MOTION, 1.0, stamp(0)),
        Alert(
            "night_exit",
            Severity.URGENT,
            AlertState.RAISED,
            "hall",
            "front-door",
            1_764_316_810.0,
            None,
            {"opened": True},
            stamp(10),
        ),
        Reading("lounge-climate", Quantity.TEMPERATURE, 17.25, stamp(20, synced=False)),
        SystemEvent(SystemKind.HUB_STARTED, {"version": "1"}, stamp(30)),
        Reading("lounge-climate", Quantity.HUMIDITY, 55.0, stamp(40)),
    ]
    return [json.dumps(StoredEvent(seq, e).to_record()) for seq, e in enumerate(events, 1)]


def test_jsonl_export_replays_readings_with_their_recorded_stamps(tmp_path: Path) -> None:
    path = write(tmp_path / "export.jsonl", *export_lines())
    source = replay_fast([path], "jsonl")
    readings = run(replay_all(source))
    assert [(r.sensor_id, r.quantity, r.value) for r in readings] == [
        ("bedroom-motion", Quantity.MOTION, 1.0),
        ("lounge-climate", Quantity.TEMPERATURE, 17.25),
        ("lounge-climate", Quantity.HUMIDITY, 55.0),
    ]
    assert [(r.stamp.wall_time, r.stamp.clock_synced) for r in readings] == [
        (1_764_316_800.0, True),
        (1_764_316_820.0, False),  # the recording hub had no NTP yet: still said so
        (1_764_316_840.0, True),
    ]
    assert source.stats.skipped == 2 and source.stats.bad_lines == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (None, "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"kind": "telemetry"}, "unknown event kind"),
        ({"kind": None}, "unknown event kind"),
        ({"sensor_id": "Bedroom Motion"}, "not a valid sensor id"),
        ({"quantity": "loudness"}, "unknown quantity"),
        ({"quantity": ["motion"]}, "unknown quantity"),
        ({"value": "1"}, "'value' must be a number"),
        ({"value": True}, "'value' must be a number"),
        ({"value": 0.5}, "must be 0 or 1"),
        ({"wall_time": 1.7e12}, "not Unix seconds"),
        ({"unit": "°F"}, "is not the unit of motion"),
        ({"clock_synced": "yes"}, "must be true or false"),
    ],
)
def test_jsonl_bad_lines_say_why(change: Any, reason: str) -> None:
    record = json.loads(export_lines()[0])
    if change is None:
        text = '{"kind": "reading", '
    elif isinstance(change, dict):
        text = json.dumps(record | change)
    else:
        text = json.dumps(change)
    with pytest.raises(ValueError, match=reason):
        jsonl.parse_line(text)


def test_jsonl_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    good = export_lines()
    path = write(tmp_path / "export.jsonl", good[0], "{oops", good[2], "[]")
    source = replay_fast([path], "jsonl")
    assert len(run(replay_all(source))) == 2
    assert [e.split(":")[1] for e in source.stats.examples] == ["2", "4"]


# --- merging and formats ----------------------------------------------------------------------


def test_files_merge_into_one_time_ordered_stream(tmp_path: Path) -> None:
    humidity = tmp_path / "Bathroom_Humidity.csv"
    temperature = tmp_path / "Kitchen_Temperature.csv"
    write(humidity, "1000000000\t50", "1000000020\t51", "1000000040\t52")
    write(temperature, "1000000010\t20", "1000000020\t21", "1000000030\t22")
    hall = write(tmp_path / "Hall_Motion.csv", "999999990\t1", "1000000050\t0")
    source = replay_fast([humidity, temperature, hall], "series")
    readings = run(replay_all(source))
    assert [(r.stamp.wall_time - 1e9, r.sensor_id) for r in readings] == [
        (-10, "hall-motion"),
        (0, "bathroom-climate"),
        (10, "kitchen-climate"),
        (20, "bathroom-climate"),  # equal times: the files' order as given
        (20, "kitchen-climate"),
        (30, "kitchen-climate"),
        (40, "bathroom-climate"),
        (50, "hall-motion"),
    ]


def test_mixed_formats_are_detected_and_merged(tmp_path: Path) -> None:
    export = write(tmp_path / "export.jsonl", *export_lines())
    climate = write(tmp_path / "Bedroom_Temperature.csv", "1764316805\t18.5")
    assert detect_format(FIXTURE) == "casas"
    assert detect_format(export) == "jsonl"
    assert detect_format(climate) == "series"
    assert detect_format(write(tmp_path / "notes.txt", "hello there")) is None
    source = replay_fast([export, climate], "auto")
    readings = run(replay_all(source))
    assert [r.stamp.wall_time - 1_764_316_800 for r in readings] == [0, 5, 20, 40]
    assert readings[1].sensor_id == "bedroom-climate"


def test_unreadable_or_unknown_files_are_reported_and_the_rest_replayed(tmp_path: Path) -> None:
    good = write(tmp_path / "Hall_Motion.csv", "1000000000\t1")
    unknown = write(tmp_path / "notes.txt", "hello there")
    missing = tmp_path / "Gone_Temperature.csv"
    source = replay_fast([missing, unknown, good], "auto")
    readings = run(replay_all(source))
    assert len(readings) == 1 and source.finished.is_set()
    assert source.stats.bad_files == 2
    assert any("Gone_Temperature.csv: cannot read" in e for e in source.stats.examples)
    assert any("notes.txt: not a format" in e for e in source.stats.examples)
    missing_series = ReplaySource([missing], "series", VirtualClock(0.0), None)
    run(replay_all(missing_series))
    assert missing_series.stats.bad_files == 1 and missing_series.finished.is_set()


def test_directories_expand_to_their_data_files(tmp_path: Path) -> None:
    write(tmp_path / "Hall_Motion.csv", "1000000000\t1")
    write(tmp_path / "LICENSE.md", "CC BY-SA 4.0")
    write(tmp_path / ".hidden", "x")
    assert expand_paths([tmp_path]) == [tmp_path / "Hall_Motion.csv"]
    assert first_timestamp([tmp_path]) == 1_000_000_000.0


# --- inference ----------------------------------------------------------------------------------


def test_casas_inference_of_kinds_and_roles() -> None:
    source = replay_fast([FIXTURE], "casas")
    inferred = {s.id: (s.kind, s.role, s.room) for s in source.inferred}
    assert inferred == {
        "d001-frontdoor": (SensorKind.CONTACT, RoomRole.EXIT_DOOR, "FrontDoor"),
        "d002-kitchen": (SensorKind.CONTACT, RoomRole.KITCHEN, "Kitchen"),
        "ls005-lounge": (SensorKind.CLIMATE, RoomRole.LIVING_ROOM, "Lounge"),
        "m004-livingroom": (SensorKind.MOTION, RoomRole.LIVING_ROOM, "LivingRoom"),
        "m005-living-room": (SensorKind.MOTION, RoomRole.LIVING_ROOM, "Living Room"),
        "m009-kitchen": (SensorKind.MOTION, RoomRole.KITCHEN, "Kitchen"),
        "m013-bathroom": (SensorKind.MOTION, RoomRole.BATHROOM, "Bathroom"),
        "m017-hall": (SensorKind.MOTION, RoomRole.HALLWAY, "Hall"),
        "m021-bedroom": (SensorKind.MOTION, RoomRole.BEDROOM, "Bedroom"),
        "m022-toilet": (SensorKind.MOTION, RoomRole.TOILET, "Toilet"),
        "m030": (SensorKind.MOTION, RoomRole.OTHER, "unknown"),
        "t102-bedroom": (SensorKind.THERMOMETER, RoomRole.BEDROOM, "Bedroom"),
        "t103-kitchen": (SensorKind.THERMOMETER, RoomRole.KITCHEN, "Kitchen"),
    }
    # The ids replay emits are the ids it inferred.
    emitted = {r.sensor_id for r in run(replay_all(source))}
    assert emitted == set(inferred)
    lines = source.describe_inferred()
    assert lines[0].startswith("No sensors in the config: inferred 13")
    assert any("m021-bedroom: motion in room 'Bedroom', role bedroom" in line for line in lines)
    assert any("6 bad line(s)" in line for line in lines)
    for sensor in source.inferred:
        config = SensorConfig(**sensor.config_fields(), source="simulated")  # type: ignore[arg-type]
        assert (config.id, config.kind, config.role) == (sensor.id, sensor.kind, sensor.role)


def test_series_and_export_inference(tmp_path: Path) -> None:
    write(tmp_path / "Bathroom_Humidity.csv", "1000000000\t50")
    write(tmp_path / "Bathroom_Temperature.csv", "1000000000\t21")
    write(tmp_path / "Bedroom_Temperature.csv", "1000000000\t18")
    write(tmp_path / "Lounge_CO2.csv", "1000000000\t650")
    write(tmp_path / "Entrance_Contact.csv", "1000000000\t1")
    source = replay_fast([tmp_path], "series")
    assert {s.id: (s.kind, s.role) for s in source.inferred} == {
        "bathroom-climate": (SensorKind.CLIMATE, RoomRole.BATHROOM),
        "bedroom-climate": (SensorKind.THERMOMETER, RoomRole.BEDROOM),
        "lounge-climate": (SensorKind.AIR_QUALITY, RoomRole.LIVING_ROOM),
        "entrance-contact": (SensorKind.CONTACT, RoomRole.EXIT_DOOR),
    }
    export = replay_fast([write(tmp_path / "export.jsonl", *export_lines())], "jsonl")
    assert {s.id: (s.kind, s.role) for s in export.inferred} == {
        "bedroom-motion": (SensorKind.MOTION, RoomRole.BEDROOM),
        "lounge-climate": (SensorKind.CLIMATE, RoomRole.LIVING_ROOM),
    }
    assert describe([])[0].startswith("No sensors in the config: inferred 0")


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("Bed", RoomRole.BEDROOM),
        ("MasterBedroom", RoomRole.BEDROOM),
        ("Bathroom", RoomRole.BATHROOM),
        ("BathroomDoor", RoomRole.BATHROOM),
        ("toilet", RoomRole.TOILET),
        ("Downstairs WC", RoomRole.TOILET),
        ("Kitchen", RoomRole.KITCHEN),
        ("LivingRoom", RoomRole.LIVING_ROOM),
        ("lounge", RoomRole.LIVING_ROOM),
        ("FrontDoor", RoomRole.EXIT_DOOR),
        ("back-door", RoomRole.EXIT_DOOR),
        ("Entry", RoomRole.EXIT_DOOR),
        ("OutsideExit", RoomRole.EXIT_DOOR),
        ("Hallway", RoomRole.HALLWAY),
        ("Outdoor", None),
        ("Floor", None),  # no "loo" inside a word
        ("Office", None),
        ("M003", None),
    ],
)
def test_room_roles_from_common_names(name: str, role: RoomRole | None) -> None:
    found = role_from_name(name)
    assert (found[0] if found else None) == role


def test_ids_fit_the_config_pattern_and_never_clash() -> None:
    assert slug("M003 Bed") == "m003-bed"
    assert slug("Küche Süd") == "kuche-sud"
    assert slug("__Living  Room__") == "living-room"
    assert slug("!!!") == "sensor"
    assert len(slug("x" * 100)) == 40
    ids = SensorIds()
    first = ids.id_for(SensorKey("M003 Bed", "Bed"))
    second = ids.id_for(SensorKey("m003 bed", "bed"))
    assert (first, second) == ("m003-bed", "m003-bed-2")
    assert ids.id_for(SensorKey("M003 Bed", "Bed")) == "m003-bed"
    long_a = ids.id_for(SensorKey("a" * 60, "x"))
    long_b = ids.id_for(SensorKey("a" * 61, "x"))
    assert long_a != long_b and all(SENSOR_ID.fullmatch(i) for i in (long_a, long_b))


@given(st.text(max_size=80))
def test_any_name_makes_a_valid_id(name: str) -> None:
    assert SENSOR_ID.fullmatch(slug(name))


# --- pacing and the clock the rest of the hub shares ---------------------------------------


@pytest.mark.skipif(not OPEN_SMART_HOME.is_dir(), reason="../shared/data not present")
def test_as_fast_as_possible_replays_a_real_open_smart_home_file() -> None:
    path = OPEN_SMART_HOME / "Bathroom_Humidity.csv"
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    start = first_timestamp([path])
    assert start == float(lines[0][0])
    clock = VirtualClock(start)
    source = ReplaySource([path], "series", clock, None)
    stamps_match_clock = []

    def emit(reading: Reading) -> None:
        stamps_match_clock.append(reading.stamp == clock.stamp())
        readings.append(reading)

    readings: list[Reading] = []
    run(source.run(emit))  # three months of data; run() is bounded by a 30 s timeout
    assert source.stats.readings_emitted == len(readings) == len(lines) > 10_000
    assert source.stats.bad_lines == 0 and source.finished.is_set()
    assert readings[0].stamp.wall_time == float(lines[0][0])
    assert readings[-1].stamp.wall_time == float(lines[-1][0])
    assert clock.wall() == float(lines[-1][0])
    assert max(r.value for r in readings) == max(float(v) for _, v in lines)
    assert all(stamps_match_clock)  # the hub's clock says exactly the reading's time


def test_other_tasks_on_the_virtual_clock_wake_in_step_with_the_replay() -> None:
    async def scenario() -> list[tuple[float, str]]:
        start = first_timestamp([FIXTURE])
        assert start is not None
        clock = VirtualClock(start)
        timeline: list[tuple[float, str]] = []

        async def hourly_check() -> None:
            while True:
                await clock.sleep(3600)
                timeline.append((clock.wall(), "tick"))

        ticker = asyncio.create_task(hourly_check())
        source: ReadingSource = ReplaySource([FIXTURE], "casas", clock, None)  # mypy checks it
        await source.run(lambda r: timeline.append((r.stamp.wall_time, "reading")))
        ticker.cancel()
        return timeline

    timeline = run(scenario())
    ticks = [t for t, what in timeline if what == "tick"]
    start = timeline[0][0]
    assert ticks == [start + hour * 3600 for hour in range(1, 24)]  # 01:02 to 23:02 local
    assert timeline == sorted(timeline, key=lambda event: event[0])


def test_n_times_real_time_on_a_simulated_clock_keeps_order_and_recorded_stamps() -> None:
    async def scenario(clock_speed: float) -> tuple[list[Reading], list[Reading]]:
        start = first_timestamp([FIXTURE])
        assert start is not None
        expected = await replay_all(ReplaySource([FIXTURE], "casas", VirtualClock(start), None))
        # The clock the hub would make for this replay, or one running at another speed.
        clock = replay_clock([FIXTURE], "casas", clock_speed)
        assert isinstance(clock, SimulatedClock) and clock.speed == clock_speed
        paced = ReplaySource([FIXTURE], "casas", clock, speed=1e6)  # a day in ~0.1 s
        readings = await replay_all(paced)
        assert paced.finished.is_set()
        return expected, readings

    for clock_speed in (1e6, 1.0):  # the clock at the replay's speed, or not: same result
        expected, readings = run(scenario(clock_speed))
        assert len(readings) == 27
        assert [(r.sensor_id, r.quantity, r.value) for r in readings] == [
            (r.sensor_id, r.quantity, r.value) for r in expected
        ]
        assert [r.stamp.wall_time for r in readings] == [r.stamp.wall_time for r in expected]
        assert all(r.stamp.clock_synced for r in readings)


def test_paced_replay_on_the_system_clock_stamps_recorded_time_and_stops_when_cancelled(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "Hall_Motion.csv", "1000000000\t1", "1000000060\t0", "1000086400\t1")

    async def scenario() -> tuple[ReplaySource, list[Reading]]:
        source = ReplaySource([path], "series", SystemClock(), speed=600.0)  # 60 s in 0.1 s
        readings: list[Reading] = []
        second = asyncio.Event()

        def emit(reading: Reading) -> None:
            readings.append(reading)
            if len(readings) == 2:
                second.set()

        task = asyncio.create_task(source.run(emit))
        await asyncio.wait_for(second.wait(), timeout=10)
        task.cancel()  # the third reading is a recorded day (144 s at 600x) away
        with pytest.raises(asyncio.CancelledError):
            await task
        return source, readings

    source, readings = run(scenario())
    assert [r.stamp.wall_time for r in readings] == [1000000000.0, 1000000060.0]
    assert readings[1].stamp.monotonic - readings[0].stamp.monotonic == 60.0
    assert not source.finished.is_set() and source.stats.readings_emitted == 2


def test_speed_and_clock_must_agree() -> None:
    with pytest.raises(ValueError, match="needs a VirtualClock"):
        ReplaySource([FIXTURE], "casas", SimulatedClock(0.0, 10.0), None)
    with pytest.raises(ValueError, match="speed None"):
        ReplaySource([FIXTURE], "casas", VirtualClock(0.0), 10.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            ReplaySource([FIXTURE], "casas", SystemClock(), bad)
    with pytest.raises(ValueError, match="unknown replay format"):
        ReplaySource([FIXTURE], "csv", VirtualClock(0.0), None)


def test_replay_config_keeps_the_configs_sensors_or_infers_them_when_it_has_none(
    tmp_path: Path,
) -> None:
    """A hub not yet set up (a config with no sensors) trying its thresholds on recorded
    data gets the sensors inferred from the data, not an empty home that checks nothing."""
    from hub.config import HubConfig, HubSection, SensorConfig
    from hub.replay import replay_config

    inferred = (
        SensorConfig.model_validate(
            {"id": "kitchen-temp", "kind": "climate", "room": "Kitchen", "source": "replay"}
        ),
    )
    configured = SensorConfig.model_validate(
        {"id": "hall-pir", "kind": "motion", "room": "Hall", "source": "replay"}
    )
    bare = HubConfig(hub=HubSection(name="flat", data_dir=tmp_path))
    assert replay_config(bare, inferred, tmp_path / "r.db").sensors == inferred
    set_up = bare.model_copy(update={"sensors": (configured,)})
    assert replay_config(set_up, inferred, tmp_path / "r.db").sensors == (configured,)

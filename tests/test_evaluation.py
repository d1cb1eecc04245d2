"""The evaluation harness (hub.evaluation): the simulator is deterministic and its anomalies are
in the data as labelled; scoring counts detections, false alarms and delays correctly; and the
whole harness runs through `hearth replay` (mechanics only: detection rates belong to the
checks, not to these tests)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.replay.jsonl import parse_line
from hub.config import RoomRole, SensorKind, load_config
from hub.evaluation.anomalies import Kind, schedule
from hub.evaluation.harness import Options, evaluate, write_report
from hub.evaluation.labels import Label, iso, parse_time, read_labels, write_labels
from hub.evaluation.realdata import prepare_real_home
from hub.evaluation.reference import GRID_S, cold_episodes, damp_episodes, reference_labels
from hub.evaluation.report import Evaluation, HomeInfo, render_text, to_json
from hub.evaluation.runner import parse_alert_lines
from hub.evaluation.scoring import GRACE_S, LEAD_S, REAL, HomeSpan, detection_rows, score
from hub.evaluation.sensors import BED_MAT, FRONT_DOOR, Sample
from hub.evaluation.simulator import HomeSpec, SimulatedHome, simulate_home, write_home
from hub.events import Quantity

LONDON = ZoneInfo("Europe/London")
HOUR = 3600.0


# --- the simulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home() -> SimulatedHome:
    """One home long enough for every kind of anomaly (62 days: 3 clean, then each with its
    gap; schedule() leaves out any that do not fit, which the first test would catch)."""
    return simulate_home(HomeSpec(seed=11, index=0, days=62, warmup_days=3))


def _label(home: SimulatedHome, anomaly: str) -> Label:
    (found,) = [label for label in home.labels if label.anomaly == anomaly]
    return found


def _between(
    samples: Sequence[Sample], start: float, end: float, quantity: Quantity | None = None
) -> list[Sample]:
    return [
        s for s in samples if start <= s.t < end and (quantity is None or s.quantity is quantity)
    ]


def test_every_anomaly_is_injected_once_after_the_clean_days(home: SimulatedHome) -> None:
    anomalies = sorted(label.anomaly for label in home.labels)
    assert anomalies == sorted(
        [
            "fall_day",
            "fall_night",
            "night_exit",
            "night_bathroom_week",
            "cold_spell",
            "damp_week",
            "battery_low",
            "sensor_dead",
        ]
    )
    clean_until = home.begin + 3 * 86400
    assert all(label.earliest >= clean_until for label in home.labels)
    assert all(label.start < label.end for label in home.labels)


def test_simulator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    spec = HomeSpec(seed=5, index=2, days=12, warmup_days=2)
    first, second = simulate_home(spec), simulate_home(spec)
    assert first.samples == second.samples
    assert first.labels == second.labels
    a, b = write_home(first, tmp_path / "a"), write_home(second, tmp_path / "b")
    assert a.data.read_bytes() == b.data.read_bytes()
    assert a.labels.read_text() == b.labels.read_text()
    other = simulate_home(HomeSpec(seed=6, index=2, days=12, warmup_days=2))
    assert other.samples != first.samples


def test_homes_differ_and_schedules_fit_the_days() -> None:
    assert (
        simulate_home(HomeSpec(1, 0, 5, 1)).samples != simulate_home(HomeSpec(1, 1, 5, 1)).samples
    )
    import random

    placed = schedule(random.Random(3), days=20, warmup_days=7, kinds=list(Kind))
    assert placed, "something fits in 13 days after the warm-up"
    assert all(day >= 7 + 2 for _, day in placed)
    assert len(placed) < len(Kind), "a week-long anomaly and six others cannot all fit"


def test_written_home_replays_with_the_hubs_own_parser_and_config(tmp_path: Path) -> None:
    built = write_home(simulate_home(HomeSpec(seed=2, index=0, days=3, warmup_days=1)), tmp_path)
    config = load_config(built.config)
    sensors = {s.id: s for s in config.sensors}
    assert config.hub.timezone == "Europe/London"
    assert sensors[FRONT_DOOR].role is RoomRole.EXIT_DOOR
    assert sensors[BED_MAT].kind is SensorKind.PRESSURE_MAT
    assert {s.source.value for s in config.sensors} == {"replay"}
    lines = built.data.read_text().splitlines()
    assert len(lines) == built.readings > 3 * 1000
    previous = 0.0
    for number, line in enumerate(lines, 1):
        record = json.loads(line)
        assert set(record) == {
            "seq",
            "kind",
            "wall_time",
            "clock_synced",
            "monotonic",
            "sensor_id",
            "quantity",
            "value",
            "unit",
        }
        assert record["seq"] == number
        reading = parse_line(line)
        assert reading is not None and reading.sensor_id in sensors
        assert reading.t >= previous
        previous = reading.t
    assert read_labels([built.labels]) == []  # no anomaly fits in three days


def test_ordinary_days_look_like_a_routine(home: SimulatedHome) -> None:
    clean = _between(home.samples, home.begin, home.begin + 3 * 86400)
    motion = [s for s in clean if s.quantity is Quantity.MOTION]
    assert 100 < len(motion) / 3 < 2000  # a few per minute while someone moves about
    bed = [s for s in clean if s.quantity is Quantity.OCCUPANCY]
    assert bed[0].value == 1.0  # asleep at midnight
    # Up for the day: out of bed and not back for hours (night visits are minutes).
    ups = [a for a, b in itertools.pairwise(bed) if a.value == 0 and b.t - a.t > 6 * HOUR]
    assert len(ups) == 3
    for up in ups:
        local = dt.datetime.fromtimestamp(up.t, LONDON)
        assert 5.5 <= local.hour + local.minute / 60 <= 9.5
    by_kind = {s.sensor for s in clean if s.quantity is Quantity.TEMPERATURE}
    assert by_kind == {
        "living-room-climate",
        "bedroom-climate",
        "bathroom-climate",
        "kitchen-climate",
    }
    temps = [s.value for s in clean if s.quantity is Quantity.TEMPERATURE]
    assert min(temps) >= 18.0 and max(temps) < 26.0
    showers = [
        s for s in clean if s.sensor == "bathroom-climate" and s.quantity is Quantity.HUMIDITY
    ]
    assert max(s.value for s in showers) >= 80  # a shower fills the bathroom with steam
    assert {s.sensor for s in clean if s.quantity is Quantity.BATTERY} >= {FRONT_DOOR, BED_MAT}


def test_fall_by_day_means_no_movement_anywhere_until_found(home: SimulatedHome) -> None:
    label = _label(home, "fall_day")
    local = dt.datetime.fromtimestamp(label.start, LONDON)
    assert 9 <= local.hour < 14
    assert label.end - label.start >= 5 * HOUR
    assert _between(home.samples, label.start + 1, label.end - 60, Quantity.MOTION) == []
    assert _between(home.samples, label.start - 1800, label.start, Quantity.MOTION)
    assert label.checks == ("inactivity",)


def test_fall_at_night_is_out_of_bed_and_not_back(home: SimulatedHome) -> None:
    label = _label(home, "fall_night")
    local = dt.datetime.fromtimestamp(label.start, LONDON)
    assert 0 <= local.hour < 4
    bed = [s for s in home.samples if s.sensor == BED_MAT and s.quantity is Quantity.OCCUPANCY]
    out = [s for s in bed if s.t == label.start]
    assert [s.value for s in out] == [0.0]
    assert _between(bed, label.start + 1, label.end) == []
    assert _between(home.samples, label.start + 6 * 60, label.end - 60, Quantity.MOTION) == []
    assert label.checks == ("out_of_bed",)


def test_night_exit_opens_the_front_door_at_night(home: SimulatedHome) -> None:
    label = _label(home, "night_exit")
    local = dt.datetime.fromtimestamp(label.start, LONDON)
    assert 2 <= local.hour < 5
    door = [s for s in home.samples if s.sensor == FRONT_DOOR and s.quantity is Quantity.CONTACT]
    assert [s.value for s in door if s.t == label.start] == [1.0]
    assert [s.value for s in door if s.t == label.end] == [1.0]  # back in
    assert _between(home.samples, label.start + 15, label.end, Quantity.MOTION) == []


def _night_visits(home: SimulatedHome, start: float, end: float) -> int:
    """Times out of bed and back within 15 minutes between `start` and `end`."""
    bed = _between(home.samples, start, end, Quantity.OCCUPANCY)
    return sum(
        1
        for a, b in itertools.pairwise(bed)
        if a.value == 0.0 and b.value == 1.0 and b.t - a.t < 15 * 60
    )


def test_night_bathroom_week_has_three_to_five_visits_a_night(home: SimulatedHome) -> None:
    label = _label(home, "night_bathroom_week")
    assert _night_visits(home, label.start, label.end) >= 3 * 7
    usual = _night_visits(home, home.begin, home.begin + 3 * 86400)
    assert usual <= 6  # 0-1 a night (2 now and then)


def test_cold_spell_goes_below_18_then_16(home: SimulatedHome) -> None:
    label = _label(home, "cold_spell")
    assert label.onset is not None and label.onset <= label.start
    temps = _between(home.samples, label.onset, label.end, Quantity.TEMPERATURE)
    first_cold = min(s.t for s in temps if s.value < 18.0)
    assert first_cold == label.start
    assert min(s.value for s in temps) < 16.0
    cold = [s.t for s in temps if s.value < 18.0 and s.sensor == "bedroom-climate"]
    assert cold[-1] - cold[0] > 2 * HOUR
    before = _between(home.samples, home.begin, label.onset, Quantity.TEMPERATURE)
    assert min(s.value for s in before) >= 18.0


def test_damp_week_keeps_bathroom_or_bedroom_above_70_for_hours(home: SimulatedHome) -> None:
    label = _label(home, "damp_week")
    for day in range(7):
        start = label.start + day * 86400
        hours = 0.0
        for sensor in ("bathroom-climate", "bedroom-climate"):
            rh = [
                s
                for s in _between(home.samples, start, start + 86400, Quantity.HUMIDITY)
                if s.sensor == sensor
            ]
            hours = max(
                hours,
                sum(b.t - a.t for a, b in itertools.pairwise(rh) if a.value > 70) / HOUR,
            )
        assert hours > 3, f"day {day}: only {hours:.1f} h above 70 %"


def test_dead_battery_silences_one_sensor_while_the_person_moves_on(home: SimulatedHome) -> None:
    low, dead = _label(home, "battery_low"), _label(home, "sensor_dead")
    assert low.sensor == dead.sensor and dead.sensor is not None
    assert low.end == dead.start
    battery = [s for s in home.samples if s.sensor == low.sensor and s.quantity is Quantity.BATTERY]
    assert next(s.value for s in battery if s.t == low.start) <= 20
    assert max(s.value for s in battery if s.t < (low.onset or 0)) > 40
    assert [
        s for s in home.samples if s.sensor == dead.sensor and dead.start <= s.t < dead.end
    ] == []
    moving = _between(home.samples, dead.start, dead.end, Quantity.MOTION)
    assert len(moving) > 100, "the resident still moves in the other rooms"
    assert dead.forbidden == ("inactivity",)
    after = [s for s in battery if s.t >= dead.end]
    assert after and after[0].value >= 99  # a new battery


# --- scoring -------------------------------------------------------------------------------

T0 = dt.datetime(2025, 2, 1, tzinfo=dt.UTC).timestamp()


def _alert(check: str, t: float, state: str = "raised", **extra: object) -> dict[str, object]:
    return {
        "home": "h1",
        "check": check,
        "severity": "warning",
        "state": state,
        "room": extra.get("room", "Living room"),
        "sensor": extra.get("sensor"),
        "time": iso(t),
        "evidence": {},
    }


def _labels() -> list[Label]:
    day = 86400.0
    fall = Label(
        "h1", "fall_day", T0 + 2 * day + 10 * HOUR, T0 + 2 * day + 16 * HOUR, ("inactivity",),
        also=("kitchen_not_used",),
    )  # fmt: skip
    dead = Label(
        "h1", "sensor_dead", T0 + 5 * day + 9 * HOUR, T0 + 6 * day + 9 * HOUR, ("sensor_silent",),
        forbidden=("inactivity",), sensor="kitchen-motion",
    )  # fmt: skip
    damp = Label(
        "h1", "damp_week", T0 + 7 * day + 2 * HOUR, T0 + 8 * day, ("damp",), onset=T0 + 7 * day,
        rooms=("Bathroom", "Bedroom"),
    )  # fmt: skip
    return [fall, dead, damp]


SPAN = HomeSpan("h1", T0, T0 + 10 * 86400, "UTC")


def test_detections_and_delays_on_hand_made_alerts() -> None:
    fall, dead, damp = _labels()
    alerts = [
        _alert("inactivity", fall.start + 2 * HOUR),  # detects the fall, 2 h late
        _alert("inactivity", fall.start + 3 * HOUR),  # the same again: neither new nor false
        _alert("inactivity", fall.start + 4 * HOUR, state="cleared"),
        _alert("kitchen_not_used", fall.start + 3 * HOUR),  # a fair side effect
        _alert("sensor_silent", dead.start + 5 * HOUR, sensor="hallway-motion"),  # wrong sensor
        _alert("sensor_silent", dead.start + 6 * HOUR, sensor="kitchen-motion"),
        _alert("inactivity", dead.start + 7 * HOUR),  # a silent sensor is not an inactive person
        _alert("damp", damp.earliest + 30 * 60, room="Bathroom"),  # 90 min before start: negative
    ]
    result = score(_labels(), alerts, [SPAN])
    by_anomaly = {o.label.anomaly: o for o in result.outcomes}
    assert by_anomaly["fall_day"].delay_s == 2 * HOUR
    assert by_anomaly["fall_day"].alerts == 2
    assert by_anomaly["fall_day"].side_effects == {"kitchen_not_used": 1}
    assert by_anomaly["sensor_dead"].delay_s == 6 * HOUR
    assert by_anomaly["sensor_dead"].forbidden_hits == {"inactivity": 1}
    assert by_anomaly["damp_week"].delay_s == -90 * 60
    assert result.raised == 7 and result.cleared == 1
    [(false, on_free_day)] = result.false_alarms
    assert (false.check, false.sensor, on_free_day) == ("sensor_silent", "hallway-motion", False)

    rows = {r.anomaly: r for r in detection_rows(result.outcomes)}
    assert (rows["fall_day"].detected, rows["fall_day"].injected) == (1, 1)
    assert rows["sensor_dead"].forbidden == {"inactivity": 1}


def test_misses_and_false_alarms_on_free_days() -> None:
    fall, dead, damp = _labels()
    alerts = [
        _alert("inactivity", fall.start - LEAD_S - 1),  # too early: a false alarm that day
        _alert("inactivity", fall.end + GRACE_S + 1),  # too late
        _alert("cold_home", T0 + 1 * HOUR),  # day 0: anomaly-free
        _alert("cold_home", T0 + 9 * 86400 + HOUR),  # day 9: anomaly-free
        _alert("damp", damp.start + HOUR, room="Kitchen"),  # not the damp rooms
        _alert("sensor_silent", dead.start + HOUR),  # names no sensor
        _alert("damp", damp.end + 11 * HOUR, room="Bedroom"),  # its 12 h window still holds
    ]
    result = score(_labels(), alerts, [SPAN])
    assert [o.label.anomaly for o in result.outcomes if o.detected] == ["damp_week"]
    free = sorted(a.check for a, on_free in result.false_alarms if on_free)
    busy = sorted(a.check for a, on_free in result.false_alarms if not on_free)
    assert free == ["cold_home", "cold_home"]
    assert busy == ["damp", "inactivity", "inactivity", "sensor_silent"]
    # Days 2, 5, 6, 7 and 8 are touched by a label window (day 8 by the damp week's grace).
    assert result.days["h1"] == pytest.approx(10.0)
    assert result.free_days["h1"] == pytest.approx(5.0)
    from hub.evaluation.scoring import SIMULATED, false_alarm_rows

    rows = {r.check: r for r in false_alarm_rows(result, SIMULATED, ["cold_home", "damp"])}
    assert rows["cold_home"].per_home_day == pytest.approx(2 / 5.0)
    assert rows["cold_home"].per_50_home_days == pytest.approx(20.0)
    assert rows["damp"].on_free_days == 0 and rows["damp"].on_anomaly_days == 1


def test_home_days_follow_local_calendar_days_across_dst() -> None:
    # 2025-03-30 is 23 hours long in London; it is still one home-day.
    begin = dt.datetime(2025, 3, 29, tzinfo=LONDON).timestamp()
    end = dt.datetime(2025, 4, 1, 12, tzinfo=LONDON).timestamp()
    span = HomeSpan("h1", begin, end, "Europe/London", REAL)
    label = Label("h1", "x", begin + 30 * HOUR, begin + 31 * HOUR, ("damp",))
    result = score([label], [], [span])
    assert result.days["h1"] == pytest.approx(3.5)
    assert result.free_days["h1"] == pytest.approx(2.5)


def test_alerts_of_unknown_shape_are_counted_not_crashing() -> None:
    alerts: list[dict[str, object]] = [
        {"check": "damp", "state": "raised", "home": "h1"},  # no time
        {"check": "damp", "state": "raised", "home": "h1", "time": "yesterday"},
        {"check": "damp", "state": "active", "home": "h1", "time": iso(T0)},
    ]
    result = score([], alerts, [SPAN])
    assert (result.raised, result.malformed, result.false_alarms) == (0, 2, [])


def test_labels_round_trip_through_json(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    write_labels(path, _labels(), LONDON)
    assert read_labels([path]) == _labels()
    assert parse_time("2025-02-01T00:00:00") == T0  # no offset: UTC
    assert parse_time("2025-02-01T01:00:00+01:00") == T0


def test_parse_alert_lines_keeps_only_alert_objects() -> None:
    text = "\n".join(
        [
            json.dumps(_alert("damp", T0)),
            "replayed 10 readings",
            "[1, 2]",
            "",
            json.dumps({"seq": 1, "kind": "reading"}),
            "{not json",
        ]
    )
    alerts, other = parse_alert_lines(text)
    assert [a["check"] for a in alerts] == ["damp"]
    assert other == 4


# --- the harness end to end ----------------------------------------------------------------

# Stands in for `hearth replay`: raises each label's first check one minute after its start
# (reading labels.json beside the config), plus one false alarm, as hub alerts would appear.
_FAKE_REPLAY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    args = sys.argv[1:]
    config = Path(args[args.index("--config") + 1])
    labels = config.parent / "labels.json"
    items = json.loads(labels.read_text()) if labels.exists() else []
    from datetime import datetime, timedelta
    for item in items:
        t = datetime.fromisoformat(item["start"]) + timedelta(minutes=1)
        alert = {"check": item["checks"][0], "severity": "warning", "state": "raised",
                 "room": (item["rooms"] or ["Hallway"])[0], "sensor": item["sensor"],
                 "time": t.isoformat(), "evidence": {}}
        print(json.dumps(alert))
        print(json.dumps({**alert, "state": "cleared"}))
    print("not an alert")
    print(json.dumps({"check": "pm25", "severity": "info", "state": "raised", "room": "Kitchen",
                      "sensor": None, "time": "2025-01-06T12:00:00+00:00", "evidence": {}}))
    print("summary on stderr", file=sys.stderr)
    """
)


def test_harness_scores_what_the_replay_prints(tmp_path: Path) -> None:
    script = tmp_path / "fake_replay.py"
    script.write_text(_FAKE_REPLAY)
    options = Options(
        homes=2,
        days=12,
        seed=3,
        out=tmp_path / "out",
        warmup_days=2,
        jobs=1,
        real_data=(),
        command=(sys.executable, str(script)),
    )
    ev = evaluate(options)
    injected = len(ev.score.outcomes)
    assert injected >= 2
    assert all(o.detected and o.delay_s == 60 for o in ev.score.outcomes)
    assert ev.score.raised == injected + 2 and ev.score.cleared == injected
    assert [a.check for a, free in ev.score.false_alarms] == ["pm25", "pm25"]
    assert ev.score.days_of("simulated") == pytest.approx(24.0)
    text_path, json_path = write_report(ev, options.out)
    report = json.loads(json_path.read_text())
    assert report["targets"]["detected"] == report["targets"]["injected"] == injected
    assert report["targets"]["verdicts"]["detection"] is True
    assert {r["home"] for r in report["replays"]} == {"sim-01", "sim-02"}
    text = text_path.read_text()
    assert "all anomalies" in text and f"{injected}/{injected}" in text
    assert render_text(ev) == text and to_json(ev)["params"]["seed"] == 3
    assert not (options.out / "homes").exists(), "generated data is temporary unless kept"


def test_harness_runs_through_hearth_replay(tmp_path: Path) -> None:
    """The real pipeline: every generated reading reaches the hub; alerts, whatever the checks
    make of six days, are parsed and scored without error."""
    options = Options(
        homes=1, days=6, seed=4, out=tmp_path / "out", warmup_days=1, jobs=1, real_data=(),
        keep_data=True,
    )  # fmt: skip
    ev = evaluate(options)
    [run] = ev.replays
    assert run["returncode"] == 0, Path(str(run["log"])).read_text()[-2000:]
    [home] = ev.homes
    log = Path(str(run["log"])).read_text()
    assert f"{home.readings} reading(s) replayed" in log
    assert ev.score.days["sim-01"] == pytest.approx(6.0)
    assert len(ev.score.outcomes) == len(
        read_labels([options.out / "homes" / "sim-01" / "labels.json"])
    )
    assert ev.score.malformed == 0
    assert run["other_stdout_lines"] == 0, "stdout carries alerts only"


def test_real_home_is_replayed_in_place_with_its_own_timezone(tmp_path: Path) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    (data / "Bathroom_Humidity.csv").write_text("1489017527\t47\n1489021127\t93\n")
    (data / "Bathroom_Temperature.csv").write_text("1489017527\t19.2\n")
    (data / "Room1_Temperature.csv").write_text("1489020000\t20.1\n1489030000\t20.3\n")
    (data / "LICENSE.md").write_text("CC BY-SA 4.0\n")
    real = prepare_real_home(data, tmp_path / "work", name="flat")
    assert (real.begin, real.end, real.readings) == (1489017527, 1489030000, 5)
    config = load_config(real.config)
    assert config.hub.timezone == "Europe/Berlin"
    roles = {s.id: s.role for s in config.sensors}
    assert roles == {"bathroom-climate": RoomRole.BATHROOM, "room1-climate": RoomRole.OTHER}
    assert sorted(p.name for p in data.iterdir()) == [
        "Bathroom_Humidity.csv",
        "Bathroom_Temperature.csv",
        "LICENSE.md",
        "Room1_Temperature.csv",
    ]


# --- reference conditions in real data -----------------------------------------------------


def _every_10_min(start: float, values: Sequence[float]) -> list[tuple[float, float]]:
    return [(start + i * 600.0, v) for i, v in enumerate(values)]


def test_cold_episodes_need_two_observed_hours_below_18() -> None:
    series = _every_10_min(T0, [19.0] * 6 + [17.5] * 15 + [19.0] * 3)  # 2.5 h below 18
    # Readings are joined by straight lines: 19 -> 17.5 crosses 18 two thirds of the way.
    [(onset, met, end)] = cold_episodes(series)
    assert (onset, met, end) == (T0 + 3400, T0 + 3400 + 2 * 3600, T0 + 12200)
    short = _every_10_min(T0, [19.0] + [17.5] * 11 + [19.0])  # 1 h 47 min
    assert cold_episodes(short) == []
    # Temperature moves slowly: an hour's missing data inside a cold run does not break it,
    # but more than three hours of it does.
    hour_hole = _every_10_min(T0, [17.5] * 7) + _every_10_min(T0 + 2 * 3600, [17.5] * 2 + [19.0])
    assert cold_episodes(hour_hole) == [(T0, T0 + 2 * 3600, T0 + 8000)]
    holed = _every_10_min(T0, [17.5] * 7) + _every_10_min(T0 + 5 * 3600, [17.5] * 7 + [19.0])
    assert cold_episodes(holed) == []


def test_damp_episodes_follow_both_rules_in_any_12_hours() -> None:
    base = [50.0] * 6
    very_high = _every_10_min(T0, base + [95.0] * 7 + base)  # 62 min above 90
    [(met, _)] = damp_episodes(very_high)
    assert met == pytest.approx(T0 + 3533 + 3600, abs=GRID_S)
    assert damp_episodes(_every_10_min(T0, base + [95.0] * 5 + base)) == []  # 50 min: a shower
    assert damp_episodes(_every_10_min(T0, base + [80.0] * 11 + base)) == []  # 110 min above 70
    [(met, _)] = damp_episodes(_every_10_min(T0, base + [80.0] * 13 + base))  # 127 min
    assert met == pytest.approx(T0 + 3400 + 2 * 3600, abs=GRID_S)
    # Two 70-minute spells 5 hours apart add up within 12 hours.
    twice = base + [80.0] * 7 + [50.0] * 30 + [80.0] * 7 + base
    assert len(damp_episodes(_every_10_min(T0, twice))) == 1


def test_reference_labels_merge_rooms_and_find_silent_sensors() -> None:
    cold_a = _every_10_min(T0, [17.0] * 15 + [19.0])
    cold_b = _every_10_min(T0 + 3600, [17.0] * 15 + [19.0])
    heard = [t for t, _ in cold_a] + [T0 + 8 * 3600]  # every 10 min, then nothing for 5.5 h
    labels = reference_labels(
        "flat", [("Kitchen", cold_a), ("Room2", cold_b)], [], [("kitchen-climate", heard)]
    )
    kinds = sorted(label.anomaly for label in labels)
    assert kinds == ["rule_cold", "rule_silent"]
    cold = next(label for label in labels if label.anomaly == "rule_cold")
    assert cold.details["rooms"] == ["Kitchen", "Room2"] and not cold.injected
    assert (cold.onset, cold.end) == (T0, T0 + 3600 + 145 * 60)
    silent = next(label for label in labels if label.anomaly == "rule_silent")
    assert silent.sensor == "kitchen-climate"
    assert (silent.onset, silent.start, silent.end) == (
        T0 + 150 * 60,
        T0 + 150 * 60 + 3600,  # three usual intervals are 30 min: the 1 h floor applies
        T0 + 8 * 3600,
    )


def test_conditions_found_in_real_data_justify_alerts_but_make_no_anomaly_days() -> None:
    span = HomeSpan("flat", T0, T0 + 4 * 86400, "Europe/Berlin", REAL)
    damp = Label("flat", "rule_damp", T0 + 86400, T0 + 86400 + 5 * HOUR, ("damp",),
                 rooms=("Bathroom",), injected=False)  # fmt: skip
    alerts = [
        {**_alert("damp", T0 + 86400 + HOUR, room="Bathroom"), "home": "flat"},  # justified
        {**_alert("damp", T0 + 3 * 86400, room="Bathroom"), "home": "flat"},  # a shower: false
    ]
    result = score([damp], alerts, [span])
    assert result.free_days["flat"] == pytest.approx(4.0)
    assert [(a.t, free) for a, free in result.false_alarms] == [(T0 + 3 * 86400, True)]
    assert result.outcomes[0].detected
    assert result.outcomes_of(REAL) == [] and result.outcomes_of(REAL, injected=False)
    text = render_text(Evaluation({}, [HomeInfo("flat", REAL, 4.0, 10, "test data")], result, {}))
    assert "RH > 70 %" in text and "1/1" in text


def test_durations_read_naturally() -> None:
    from hub.evaluation.report import duration

    assert [duration(x) for x in (None, 0.4, -12, 45 * 60, -2 * HOUR - 300, 3 * 86400 + 7200)] == [
        "-",
        "0s",
        "-12s",
        "45m",
        "-2h05m",
        "3d02h",
    ]

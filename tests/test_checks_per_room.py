"""Per-room thresholds ([checks.rooms."<room>".<check>]): the config rules (merge over the
home's values, full error locations, unknown rooms refused, round trip) and the checks using
each sensor's room's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.checks import MemoryStateStore
from hub.config import ConfigError, load_config, parse_config, write_config
from hub.events import Quantity
from tests.test_checks_harness import Harness, make_config

Q = Quantity
HOUR = 3600.0
MIN = 60.0

HOME = """\
[hub]
name = "Flat 3"
data_dir = "/tmp/hearth-per-room-test"

[[sensors]]
id = "bath-climate"
kind = "climate"
room = "Bathroom"
role = "bathroom"
source = "simulated"

[[sensors]]
id = "lounge-climate"
kind = "climate"
room = "Living room"
role = "living_room"
source = "simulated"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(HOME + text, "hub.toml", Path("/tmp"))
    return caught.value.problems


# --- config ---------------------------------------------------------------------------------


def test_an_override_merges_over_the_home_values_not_the_defaults() -> None:
    config = parse_config(
        HOME + "[checks.cold_home]\nwarning_below_c = 21\nwarning_after_min = 90\n"
        '[checks.rooms."Living room".cold_home]\nurgent_below_c = 19\n',
        "hub.toml",
        Path("/tmp"),
    )
    lounge = config.checks_for_room("Living room").cold_home
    # 19 would break "urgent below warning" against the default 18, not against the home's 21.
    assert (lounge.warning_below_c, lounge.warning_after_min, lounge.urgent_below_c) == (21, 90, 19)
    assert config.checks_for_room("Bathroom") is config.checks
    assert config.checks_for_room("Living room") is config.checks_for_room("Living room")
    assert config.checks_for_room("Living room").damp == config.checks.damp


def test_a_bad_override_value_is_named_by_its_full_location() -> None:
    assert problems("[checks.rooms.Bathroom.damp]\nrh_high = 175\n") == [
        "checks.rooms.Bathroom.damp.rh_high: must be at most 100"
    ]
    assert problems('[checks.rooms.Bathroom.damp]\nrh_high = "75"\n') == [
        "checks.rooms.Bathroom.damp.rh_high: expected a number, got the string '75'"
    ]


def test_cross_field_rules_hold_for_the_merged_values() -> None:
    assert problems("[checks.rooms.Bathroom.damp]\nrh_high = 95\n") == [
        "checks.rooms.Bathroom.damp.rh_very_high: must be above rh_high (95)"
    ]


def test_an_unknown_key_in_an_override_is_refused_with_a_suggestion() -> None:
    assert problems("[checks.rooms.Bathroom.damp]\nrh_hgh = 75\n") == [
        "checks.rooms.Bathroom.damp.rh_hgh: unknown key (did you mean 'rh_high'?)"
    ]


def test_only_environmental_checks_can_be_overridden_per_room() -> None:
    assert problems("[checks.rooms.Bathroom.inactivity]\nceiling_day_hours = 2\n") == [
        "checks.rooms.Bathroom.inactivity: unknown key"
        " (allowed here: cold_home, overheating, damp, ventilation, pm25)"
    ]


def test_a_room_no_sensor_is_in_is_refused() -> None:
    assert problems("[checks.rooms.Bathrom.damp]\nrh_high = 75\n") == [
        "checks.rooms.Bathrom: no sensor is in room 'Bathrom' (rooms: Bathroom, Living room);"
        " did you mean 'Bathroom'?"
    ]


def test_every_override_problem_is_reported_at_once() -> None:
    found = problems(
        "[checks.rooms.Bathroom.damp]\nrh_high = 175\nrh_hgh = 1\n"
        '[checks.rooms."Living room".cold_home]\nurgent_below_c = 18\n'
    )
    assert found == [
        "checks.rooms.Bathroom.damp.rh_high: must be at most 100",
        "checks.rooms.Bathroom.damp.rh_hgh: unknown key (did you mean 'rh_high'?)",
        "checks.rooms.Living room.cold_home.urgent_below_c: must be below warning_below_c (18)",
    ]


def test_overrides_round_trip_through_write_config(tmp_path: Path) -> None:
    text = (
        HOME + "[checks.rooms.Bathroom.damp]\nrh_high = 75\n"
        '[checks.rooms."Living room".cold_home]\nwarning_below_c = 19\n'
        '[checks.rooms."Living room".overheating]\nnight_start = 21:30:00\n'
    )
    config = parse_config(text, "hub.toml", tmp_path)
    path = tmp_path / "hub.toml"
    write_config(path, config)
    again = load_config(path)
    assert again == config
    assert again.checks_for_room("Living room").overheating.night_start == "21:30"
    assert again.checks_for_room("Bathroom").damp.rh_high == 75
    # Only what the room sets is written: a later change to the home value still reaches it.
    assert again.checks.rooms["Bathroom"].damp == {"rh_high": 75}


def test_a_home_without_overrides_writes_no_rooms_table(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    write_config(path, parse_config(HOME, "hub.toml", tmp_path))
    assert "rooms" not in path.read_text()


# --- checks ---------------------------------------------------------------------------------


def harness(rooms: dict[str, Any]) -> Harness:
    return Harness(make_config(checks={"rooms": rooms}))


def test_a_bathroom_with_a_higher_damp_threshold_does_not_alarm_at_the_home_level() -> None:
    h = harness({"Bathroom": {"damp": {"rh_high": 80}}})
    for _ in range(36):  # 3 h at 75 % in both rooms
        h.read("bathroom-climate", Q.HUMIDITY, 75.0)
        h.read("living-climate", Q.HUMIDITY, 75.0)
        h.advance(5 * MIN)
    assert h.of("damp", sensor="bathroom-climate") == []
    (alert,) = h.of("damp", sensor="living-climate")
    assert alert.evidence["rh_high_pct"] == 70.0


def test_a_bathroom_above_its_own_damp_threshold_still_alarms() -> None:
    h = harness({"Bathroom": {"damp": {"rh_high": 80}}})
    h.hold("bathroom-climate", Q.HUMIDITY, 85.0, 3 * HOUR)
    (alert,) = h.of("damp", sensor="bathroom-climate")
    assert alert.evidence["rh_high_pct"] == 80.0


def test_a_living_room_with_a_higher_cold_threshold_alarms_where_others_do_not() -> None:
    h = harness({"Living room": {"cold_home": {"warning_below_c": 19}}})
    for _ in range(26):  # 2 h 10 min at 18.5 °C everywhere
        for sensor in ("living-climate", "bedroom-climate", "bathroom-climate"):
            h.read(sensor, Q.TEMPERATURE, 18.5)
        h.advance(5 * MIN)
    (alert,) = h.of("cold_home")
    assert (alert.room, alert.sensor_id) == ("Living room", "living-climate")
    assert alert.evidence["warning_below_c"] == 19.0


def test_room_thresholds_survive_a_restart() -> None:
    config = make_config(checks={"rooms": {"Bathroom": {"damp": {"rh_high": 80}}}})
    h = Harness(config, store=MemoryStateStore())
    h.hold("bathroom-climate", Q.HUMIDITY, 75.0, 1 * HOUR)
    h = h.restart()
    h.hold("bathroom-climate", Q.HUMIDITY, 75.0, 3 * HOUR)
    h.hold("living-climate", Q.HUMIDITY, 75.0, 3 * HOUR)
    assert [a.sensor_id for a in h.of("damp")] == ["living-climate"]

"""The per-sensor facts every upload's health report carries to the council's fleet view."""

from __future__ import annotations

from pathlib import Path

from hub.config import parse_config
from hub.events import Quantity, Reading, Stamp
from hub.sensor_health import SensorHealth

CONFIG = """
[hub]
name = "Flat 3"

[[sensors]]
id = "hall-motion"
kind = "motion"
room = "hall"
source = "simulated"

[[sensors]]
id = "bed-climate"
kind = "climate"
room = "bedroom"
source = "simulated"
"""


def _reading(sensor: str, quantity: Quantity, value: float, at: float) -> Reading:
    return Reading(sensor, quantity, value, Stamp(at, True, at - 1000.0))


def test_a_sensor_never_heard_is_reported_with_no_last_seen() -> None:
    health = SensorHealth(parse_config(CONFIG, "t", Path(".")).sensors)
    report = health.report()
    assert report["hall-motion"] == {
        "room": "hall",
        "kind": "motion",
        "last_seen": None,
        "battery": None,
        "silent": False,
    }


def test_last_seen_and_battery_follow_the_latest_readings() -> None:
    health = SensorHealth(parse_config(CONFIG, "t", Path(".")).sensors)
    health.on_reading(_reading("bed-climate", Quantity.BATTERY, 81.0, 100.0))
    health.on_reading(_reading("bed-climate", Quantity.TEMPERATURE, 19.5, 160.0))
    health.on_reading(_reading("bed-climate", Quantity.BATTERY, 12.0, 200.0))
    entry = health.report()["bed-climate"]
    assert entry["last_seen"] == 200.0
    assert entry["battery"] == 12.0


def test_silent_comes_from_the_open_sensor_silent_alerts_only() -> None:
    health = SensorHealth(parse_config(CONFIG, "t", Path(".")).sensors)
    open_alerts = [
        {"check": "sensor_silent", "sensor_id": "hall-motion"},
        {"check": "low_battery", "sensor_id": "bed-climate"},
    ]
    report = health.report(open_alerts)
    assert report["hall-motion"]["silent"] is True
    assert report["bed-climate"]["silent"] is False


def test_a_sensor_heard_but_not_configured_is_still_reported() -> None:
    health = SensorHealth(())
    health.on_reading(_reading("stray", Quantity.RSSI, -70.0, 5.0))
    assert health.report()["stray"]["kind"] == "unknown"

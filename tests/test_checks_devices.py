"""Device health: each sensor's usual quiet gap is learned, a silent sensor is reported as
silent (and visible to other checks), and restarts or event-driven sensors do not make
false silences; low batteries are reported once."""

from __future__ import annotations

from hub.checks import MemoryStateStore
from hub.config import HubConfig
from hub.events import AlertState, Quantity, Severity
from tests.test_checks_harness import T0, Harness, make_config

Q = Quantity
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
RAISED, CLEARED = AlertState.RAISED, AlertState.CLEARED

CLIMATE = ("lounge-climate", "climate", "Lounge", "living_room")
MOTION = ("hall-motion", "motion", "Hallway", "hallway")


def _config(*sensors: tuple[str, str, str, str]) -> HubConfig:
    return make_config(sensors)


def test_a_periodic_sensor_is_silent_after_three_of_its_usual_gaps() -> None:
    h = Harness(_config(CLIMATE))
    h.hold("lounge-climate", Q.TEMPERATURE, 20, 3 * DAY, every_s=20 * MIN)
    assert h.engine.health.usual_gap_s("lounge-climate") == 20 * MIN
    assert h.engine.health.silent_after_s("lounge-climate") == 60 * MIN
    last_heard = h.wall - 20 * MIN
    h.advance(40 * MIN)  # 60 min since the last report: not yet more than three gaps
    assert h.alerts == [] and h.engine.silent_sensors() == frozenset()
    h.advance(2 * MIN)
    (alert,) = h.alerts
    assert (alert.check, alert.state, alert.severity) == ("sensor_silent", RAISED, Severity.WARNING)
    assert alert.start == last_heard
    assert alert.evidence["usual_longest_gap_min"] == 20
    assert h.engine.silent_sensors() == {"lounge-climate"}
    h.read("lounge-climate", Q.TEMPERATURE, 20)
    assert h.engine.silent_sensors() == frozenset()  # heard: at once not silent
    h.advance(MIN)
    _, cleared = h.alerts
    assert cleared.state is CLEARED and cleared.end == h.wall - MIN


def test_the_silence_threshold_has_a_floor() -> None:
    h = Harness(_config(CLIMATE))
    h.hold("lounge-climate", Q.TEMPERATURE, 20, 3 * DAY, every_s=MIN)
    assert h.engine.health.silent_after_s("lounge-climate") == 30 * MIN


def test_a_dead_heartbeating_motion_sensor_is_silent_not_a_still_person() -> None:
    h = Harness(_config(MOTION))
    h.hold("hall-motion", Q.MOTION, 0, 3 * DAY, every_s=15 * MIN)  # a BLE PIR's heartbeat
    h.advance(2 * HOUR)  # its battery dies
    (alert,) = h.alerts
    assert alert.check == "sensor_silent" and alert.sensor_id == "hall-motion"
    assert h.engine.health.is_silent("hall-motion")


def test_an_event_driven_motion_sensor_is_not_silent_overnight() -> None:
    h = Harness(_config(MOTION), start=T0 - 2 * HOUR)  # 06:00
    for _ in range(5):
        for _ in range(16):  # 06:00-22:00: someone moves every hour or so
            h.read("hall-motion", Q.MOTION, 1)
            h.read("hall-motion", Q.MOTION, 0)
            h.advance(HOUR)
        h.advance(8 * HOUR)  # asleep: the sensor says nothing for 8 h
    assert h.alerts == []
    assert h.engine.health.usual_gap_s("hall-motion") == 9 * HOUR
    assert h.engine.health.silent_after_s("hall-motion") == 27 * HOUR


def test_sensors_not_yet_learned() -> None:
    h = Harness(_config(CLIMATE, MOTION))
    h.advance(2 * DAY)
    # A periodic sensor never heard is reported 6 h after the engine's first stamp (the first
    # tick, at one minute); an event sensor is not judged before it is learned.
    (alert,) = h.alerts
    assert alert.sensor_id == "lounge-climate" and alert.stamp.monotonic == 6 * HOUR + 2 * MIN
    assert h.engine.health.silent_after_s("hall-motion") is None


def test_a_wired_sensor_is_never_judged_silent() -> None:
    config = HubConfig.model_validate(
        {
            "hub": {"name": "t"},
            "sensors": [
                {
                    "id": "pull-cord",
                    "kind": "button",
                    "room": "Bathroom",
                    "source": "gpio",
                    "pin": 17,
                },
            ],
        }
    )
    h = Harness(config)
    h.read("pull-cord", Q.BUTTON, 1)
    h.advance(10 * DAY)
    assert h.of("sensor_silent") == []
    assert h.engine.health.silent_after_s("pull-cord") is None


def test_a_restart_after_downtime_does_not_report_every_sensor_silent() -> None:
    store = MemoryStateStore()
    h = Harness(_config(CLIMATE, MOTION), store=store)
    h.hold("lounge-climate", Q.TEMPERATURE, 20, 3 * DAY, every_s=10 * MIN)
    again = h.restart(reboot=True)
    again.wall += 3 * HOUR  # a power cut of three hours; the clock is synchronised
    again.advance(10 * MIN)
    assert again.alerts == []
    again.hold("lounge-climate", Q.TEMPERATURE, 20, HOUR, every_s=10 * MIN)
    assert again.alerts == []
    again.advance(HOUR)  # now it really has gone quiet
    assert [a.check for a in again.alerts] == ["sensor_silent"]


def test_a_silent_sensor_stays_one_alert_across_a_restart() -> None:
    store = MemoryStateStore()
    h = Harness(_config(CLIMATE), store=store)
    h.hold("lounge-climate", Q.TEMPERATURE, 20, 3 * DAY, every_s=10 * MIN)
    h.advance(HOUR)
    assert [a.state for a in h.alerts] == [RAISED]
    again = h.restart(reboot=True)
    again.advance(6 * HOUR)
    assert again.alerts == []
    assert again.engine.silent_sensors() == {"lounge-climate"}
    again.read("lounge-climate", Q.TEMPERATURE, 20)
    again.advance(MIN)
    (cleared,) = again.alerts
    assert cleared.state is CLEARED and cleared.start == h.alerts[0].start


def test_low_battery_is_reported_once_and_clears_on_a_new_battery() -> None:
    h = Harness(_config(CLIMATE))
    h.series("lounge-climate", Q.BATTERY, [30, 20, 14, 16, 14, 16, 13, 16, 14], 10 * MIN)
    assert [(a.check, a.state, a.severity) for a in h.of("low_battery")] == [
        ("low_battery", RAISED, Severity.INFO)
    ]
    assert h.of("low_battery")[0].evidence["battery_pct"] == 14
    h.read("lounge-climate", Q.BATTERY, 100)
    assert [a.state for a in h.of("low_battery")] == [RAISED, CLEARED]


def test_downtime_is_not_learned_as_a_usual_gap() -> None:
    store = MemoryStateStore()
    h = Harness(_config(CLIMATE), store=store)
    h.hold("lounge-climate", Q.TEMPERATURE, 20, 1.5 * DAY, every_s=10 * MIN)
    again = h.restart(reboot=True)
    again.wall += 5 * HOUR  # the hub was off; the sensor was not quiet, the hub was deaf
    again.hold("lounge-climate", Q.TEMPERATURE, 20, 0.7 * DAY, every_s=10 * MIN)
    record = again.engine.health.record("lounge-climate")
    assert record is not None and len(record.maxima) == 2  # two days learned
    assert again.engine.health.usual_gap_s("lounge-climate") == 10 * MIN

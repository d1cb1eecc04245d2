"""Activity checks on their own: night exit, out of bed, inactivity, not up, night bathroom,
kitchen not used; with the warm-up of learned checks, DST nights, a restart in the middle of
a condition, a dead motion sensor (sensor_silent, not inactivity) and going out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from hub.checks import MemoryStateStore
from hub.events import AlertState, Quantity, Severity
from tests.test_checks_harness import Harness, make_config

Q = Quantity
HOUR = 3600.0
MIN = 60.0
RAISED, CLEARED = AlertState.RAISED, AlertState.CLEARED

HOME = (
    ("bedroom-motion", "motion", "Bedroom", "bedroom"),
    ("hall-motion", "motion", "Hallway", "hallway"),
    ("bathroom-motion", "motion", "Bathroom", "bathroom"),
    ("kitchen-motion", "motion", "Kitchen", "kitchen"),
    ("living-motion", "motion", "Living room", "living_room"),
    ("front-door", "contact", "Hallway", "exit_door"),
)
MAT = (("bed-mat", "pressure_mat", "Bedroom", "bedroom"),)
MIDNIGHT = datetime(2025, 11, 28, tzinfo=UTC).timestamp()  # GMT: local = UTC

Event = tuple[float, str, Quantity, float]  # (hour of day, sensor, quantity, value)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def home(*, mat: bool = False, start: float = MIDNIGHT, **kw: object) -> Harness:
    return Harness(make_config(HOME + (MAT if mat else ())), start=start, **kw)  # type: ignore[arg-type]


def every(sensor: str, start_h: float, end_h: float, step_min: float) -> list[Event]:
    out: list[Event] = []
    h = start_h
    while h < end_h:
        out.append((h, sensor, Q.MOTION, 1.0))
        h += step_min / 60.0
    return out


def normal_day(
    *, bathroom_visits: Iterable[float] = (2.0,), kitchen: bool = True, up: bool = True
) -> list[Event]:
    """A plain routine: asleep until 07:00 (turning over), up, kitchen for breakfast and
    lunch, living room, to bed at 22:00."""
    events = every("bedroom-motion", 0.1, 7.0, 50)
    for visit in bathroom_visits:
        events += [
            (visit, "hall-motion", Q.MOTION, 1.0),
            (visit + 0.02, "bathroom-motion", Q.MOTION, 1.0),
            (visit + 0.06, "bathroom-motion", Q.MOTION, 1.0),
            (visit + 0.08, "hall-motion", Q.MOTION, 1.0),
            (visit + 0.1, "bedroom-motion", Q.MOTION, 1.0),
        ]
    if up:
        events += [*every("bedroom-motion", 7.0, 7.1, 2), (7.1, "hall-motion", Q.MOTION, 1.0)]
        room = "kitchen-motion" if kitchen else "living-motion"
        events += every(room, 7.2, 8.5, 5) + every("living-motion", 8.5, 12.0, 10)
        events += every(room, 10.0, 10.2, 4)
        events += every("kitchen-motion", 12.5, 13.0, 5) + every("living-motion", 13.0, 22.0, 10)
        events += [*every("bathroom-motion", 15.0, 15.1, 2), (22.0, "hall-motion", Q.MOTION, 1.0)]
        events += every("bedroom-motion", 22.1, 23.0, 15) + every("bedroom-motion", 23.0, 24.0, 50)
    return events


def live(h: Harness, events: Iterable[Event], until_h: float = 24.0) -> None:
    """Play a day's events from the harness's current local midnight to `until_h`."""
    day_start = h.wall - (h.wall - MIDNIGHT) % (24 * HOUR)
    for hour, sensor, quantity, value in sorted(events, key=lambda e: e[0]):
        if hour >= until_h:
            break
        at = day_start + hour * HOUR
        if at < h.wall:
            continue  # played already (a day continued in parts)
        if at > h.wall:
            h.advance(at - h.wall)
        h.read(sensor, quantity, value)
    end = day_start + until_h * HOUR
    if end > h.wall:
        h.advance(end - h.wall)


def learn(h: Harness, days: int, **kw: object) -> None:
    for _ in range(days):
        live(h, normal_day(**kw))  # type: ignore[arg-type]


def names(h: Harness, state: AlertState | None = RAISED) -> list[str]:
    return [a.check for a in h.alerts if state is None or a.state is state]


# --- night exit ----------------------------------------------------------------------------


def test_night_exit_warns_at_once_and_not_by_day() -> None:
    h = home()
    live(h, [(14.0, "front-door", Q.CONTACT, 1.0), (14.01, "front-door", Q.CONTACT, 0.0)], 23.0)
    assert h.of("night_exit") == []
    h.read("front-door", Q.CONTACT, 1.0)
    (alert,) = h.of("night_exit")
    assert (alert.state, alert.severity, alert.sensor_id) == (
        RAISED,
        Severity.WARNING,
        "front-door",
    )
    assert alert.evidence["night"] == "22:00-06:00"
    h.read("front-door", Q.CONTACT, 0.0)
    h.advance(30 * MIN)
    h.read("front-door", Q.CONTACT, 1.0)  # back in: no second alarm for the same outing
    h.read("front-door", Q.CONTACT, 0.0)
    h.advance(5 * MIN)
    h.read("bedroom-motion", Q.MOTION, 1.0)
    assert [a.state for a in h.of("night_exit")] == [RAISED, CLEARED]


def test_night_exit_on_the_night_the_clocks_go_forward() -> None:
    # 2025-03-30: 01:00 GMT becomes 02:00 BST. 05:30 UTC is 06:30 local: morning, not night.
    h = home(start=utc("2025-03-30T05:30:00"))
    h.read("front-door", Q.CONTACT, 1.0)
    assert h.of("night_exit") == []
    h = home(start=utc("2025-03-30T04:30:00"))  # 05:30 BST: still night
    h.read("front-door", Q.CONTACT, 1.0)
    assert names(h) == ["night_exit"]


def test_night_exit_on_the_night_the_clocks_go_back() -> None:
    # 2025-10-26: 02:00 BST becomes 01:00 GMT. 21:30 UTC on the 25th is 22:30 BST: night.
    h = home(start=utc("2025-10-25T21:30:00"))
    h.read("front-door", Q.CONTACT, 1.0)
    assert names(h) == ["night_exit"]
    h = home(start=utc("2025-10-26T06:30:00"))  # 06:30 GMT: morning
    h.read("front-door", Q.CONTACT, 1.0)
    assert h.of("night_exit") == []


# --- out of bed ----------------------------------------------------------------------------


def test_out_of_bed_urgent_after_45_minutes_and_clears_when_back() -> None:
    h = home()
    live(h, [(23.0, "bedroom-motion", Q.MOTION, 1.0)], 23.5)
    h.advance(2 * HOUR)  # 01:30
    h.read("hall-motion", Q.MOTION, 1.0)
    h.advance(44 * MIN)
    assert h.of("out_of_bed") == []
    h.advance(2 * MIN)
    (alert,) = h.of("out_of_bed")
    assert (alert.state, alert.severity, alert.room) == (RAISED, Severity.URGENT, "Bedroom")
    assert alert.evidence["away_min"] == 45
    h.read("bedroom-motion", Q.MOTION, 1.0)
    assert [a.state for a in h.of("out_of_bed")] == [RAISED, CLEARED]


def test_out_of_bed_not_raised_for_a_short_visit_or_an_early_start_to_the_day() -> None:
    h = home()
    live(h, normal_day(), 24.0)  # a bathroom visit at 02:00, up at 07:00
    live(h, [(5.5, "hall-motion", Q.MOTION, 1.0)], 7.0)  # up at 05:30, never back to bed
    assert h.of("out_of_bed") == []


def test_out_of_bed_waits_while_the_person_is_up_and_about() -> None:
    h = home()
    live(h, [(23.0, "bedroom-motion", Q.MOTION, 1.0)], 24.0)
    live(h, every("living-motion", 1.0, 2.5, 2), 2.5)  # awake, watching television
    assert h.of("out_of_bed") == []
    h.advance(12 * MIN)  # then nothing: quiet long enough, and long past 45 minutes away
    assert names(h) == ["out_of_bed"]


def test_out_of_bed_with_a_bed_mat_bedroom_motion_is_not_a_return() -> None:
    h = home(mat=True)
    live(h, [(22.5, "bed-mat", Q.OCCUPANCY, 1.0), (23.5, "bed-mat", Q.OCCUPANCY, 0.0)], 23.6)
    h.read("bedroom-motion", Q.MOTION, 1.0)  # on the bedroom floor
    h.advance(46 * MIN)
    assert names(h) == ["out_of_bed"]
    h.read("bed-mat", Q.OCCUPANCY, 1.0)
    assert [a.state for a in h.of("out_of_bed")] == [RAISED, CLEARED]


def test_out_of_bed_survives_a_restart_in_the_middle() -> None:
    h = home(store=MemoryStateStore())
    live(h, [(23.0, "bedroom-motion", Q.MOTION, 1.0), (23.5, "hall-motion", Q.MOTION, 1.0)], 23.9)
    h = h.restart()  # 24 minutes away, then the power cut
    h.advance(20 * MIN)
    assert h.of("out_of_bed") == []
    h.advance(3 * MIN)
    (alert,) = h.of("out_of_bed")
    assert alert.start == MIDNIGHT + 23.5 * HOUR


# --- inactivity ----------------------------------------------------------------------------


def test_inactivity_day_ceiling_is_urgent_and_clears_on_movement() -> None:
    h = home()
    live(h, [(9.0, "living-motion", Q.MOTION, 1.0)], 12.9)
    assert h.of("inactivity") == []
    h.advance(10 * MIN)
    (alert,) = h.of("inactivity")
    assert (alert.state, alert.severity) == (RAISED, Severity.URGENT)
    assert alert.evidence["limit"] == "day ceiling"
    assert alert.start == MIDNIGHT + 9 * HOUR
    h.read("kitchen-motion", Q.MOTION, 1.0)
    assert [a.state for a in h.of("inactivity")] == [RAISED, CLEARED]


def test_a_night_of_sleep_is_not_inactivity_but_a_late_morning_is() -> None:
    h = home()
    live(h, [(21.5, "bedroom-motion", Q.MOTION, 1.0)], 24.0)  # asleep, never turning over
    live(h, [], 9.9)  # past 06:00: the day part counts from the end of the night
    assert h.of("inactivity") == []
    h.advance(10 * MIN)  # 10:00: four hours into the day, still nothing
    assert names(h) == ["inactivity"]


def test_going_out_for_hours_is_not_inactivity() -> None:
    h = home()
    live(
        h,
        [
            (9.0, "hall-motion", Q.MOTION, 1.0),
            (9.01, "front-door", Q.CONTACT, 1.0),
            (9.02, "front-door", Q.CONTACT, 0.0),
            (9.03, "hall-motion", Q.MOTION, 1.0),
        ],
        17.0,
    )
    assert h.of("inactivity") == []
    live(
        h,
        [
            (17.0, "front-door", Q.CONTACT, 1.0),
            (17.01, "front-door", Q.CONTACT, 0.0),
            (17.05, "living-motion", Q.MOTION, 1.0),
        ],
        22.0,
    )  # home, then still for 5 h
    assert names(h) == ["inactivity"]


def test_learned_inactivity_is_silent_until_learned_then_cites_the_baseline() -> None:
    h = home()
    learn(h, 3)
    live(h, [e for e in normal_day() if not 18.0 < e[0] < 21.0])  # 3 h still after 18:00
    assert h.of("inactivity") == []  # below the 4 h ceiling, and not learned yet
    learn(h, 5)
    assert h.of("inactivity") == []  # a week of normal days: no false alarm
    live(h, [e for e in normal_day() if not 14.0 < e[0] < 17.0])  # 3 h still after 14:00
    (alert,) = h.of("inactivity", RAISED)
    assert alert.evidence["limit"] == "learned"
    baseline = alert.evidence["baseline"]
    assert isinstance(baseline, dict) and baseline["days_learned"] >= 7
    assert alert.stamp.wall_time - alert.start == 2 * HOUR  # the floor of the learned limit


def _heartbeats(step_h: float = 1.0) -> list[Event]:
    sensors = (
        "bedroom-motion",
        "hall-motion",
        "bathroom-motion",
        "kitchen-motion",
        "living-motion",
    )
    out: list[Event] = []
    h = 0.3
    while h < 24.0:
        out += [(h, s, Q.BATTERY, 80.0) for s in sensors]
        h += step_h
    return out


def _dead_sensor_day(dead: str | None) -> list[Event]:
    """Up as usual, then from 09:00 sitting still in the living room until 15:00."""
    day = [e for e in normal_day() + _heartbeats() if not 9.0 < e[0] < 15.0 or e[2] is Q.BATTERY]
    if dead is not None:
        day = [e for e in day if not (e[1] == dead and 8.5 < e[0] < 24.0)]
    return day


def test_a_dead_motion_sensor_raises_sensor_silent_not_inactivity() -> None:
    h = home()
    for _ in range(3):  # days with hourly battery reports: the sensors' rhythm is learned
        live(h, normal_day() + _heartbeats())
    live(h, _dead_sensor_day("living-motion"), 15.5)
    assert "inactivity" not in names(h)
    assert [a.sensor_id for a in h.of("sensor_silent", RAISED)] == ["living-motion"]


def test_the_same_stillness_with_every_sensor_alive_is_inactivity() -> None:
    h = home()
    for _ in range(3):
        live(h, normal_day() + _heartbeats())
    live(h, _dead_sensor_day(None), 15.5)
    assert names(h) == ["inactivity"]


# --- not up --------------------------------------------------------------------------------


def test_not_up_after_the_usual_time_plus_margin_once_learned() -> None:
    h = home()
    learn(h, 3)
    live(h, normal_day(up=False), 12.0)
    assert h.of("not_up") == []  # warm-up: not learned yet
    live(h, normal_day(up=False), 24.0)
    learn(h, 8)
    assert h.of("not_up") == []
    live(h, normal_day(up=False), 8.6)
    assert h.of("not_up") == []
    live(h, normal_day(up=False), 8.9)  # usual 07:12 + 90 min = 08:42
    (alert,) = h.of("not_up")
    assert alert.severity is Severity.WARNING
    baseline = alert.evidence["baseline"]
    assert isinstance(baseline, dict) and baseline["usual_rising"] == "07:12"
    live(h, [(9.0, "kitchen-motion", Q.MOTION, 1.0)], 9.1)
    assert [a.state for a in h.of("not_up")] == [RAISED, CLEARED]


def test_not_up_carries_its_learning_across_a_restart() -> None:
    h = home(store=MemoryStateStore())
    learn(h, 8)
    h = h.restart()
    live(h, normal_day(up=False), 9.0)
    assert "not_up" in names(h)  # (inactivity too: nobody seen since 06:50)


# --- night bathroom ------------------------------------------------------------------------


def test_night_bathroom_visits_above_baseline_for_two_nights() -> None:
    h = home()
    learn(h, 8)
    busy = (1.0, 2.0, 3.0, 4.0)
    live(h, normal_day(bathroom_visits=busy))
    assert h.of("night_bathroom") == []  # one night is not a trend
    live(h, normal_day(bathroom_visits=busy), 3.5)
    (alert,) = h.of("night_bathroom")
    assert alert.severity is Severity.WARNING
    assert alert.evidence["visits_tonight"] == 3  # threshold max(3, 1 + 2)
    baseline = alert.evidence["baseline"]
    assert isinstance(baseline, dict) and baseline["mean_visits"] == 1.0
    live(h, normal_day(bathroom_visits=busy), 24.0)
    learn(h, 1)
    assert [a.state for a in h.of("night_bathroom")] == [RAISED, CLEARED]


def test_night_bathroom_silent_in_warm_up() -> None:
    h = home()
    learn(h, 2)
    for _ in range(3):
        live(h, normal_day(bathroom_visits=(1.0, 2.0, 3.0, 4.0)))
    assert h.of("night_bathroom") == []


# --- kitchen not used ----------------------------------------------------------------------


def test_kitchen_not_used_in_the_morning_once_learned() -> None:
    h = home()
    learn(h, 3)
    live(h, normal_day(kitchen=False))
    assert h.of("kitchen_not_used") == []  # warm-up
    h = home()
    learn(h, 9)
    assert h.of("kitchen_not_used") == []
    live(h, normal_day(kitchen=False), 12.2)
    (alert,) = h.of("kitchen_not_used")
    assert (alert.severity, alert.room) == (Severity.INFO, "Home")
    assert alert.evidence["window"] == "08:00-12:00"
    live(h, normal_day(kitchen=False), 13.0)  # lunch in the kitchen at 12:30
    assert [a.state for a in h.of("kitchen_not_used")] == [RAISED, CLEARED]


def test_a_kitchen_skipped_one_morning_in_ten_is_not_usual() -> None:
    h = home()
    learn(h, 4)
    live(h, normal_day(kitchen=False))
    learn(h, 5)
    live(h, normal_day(kitchen=False), 12.2)
    assert h.of("kitchen_not_used") == []


def test_kitchen_not_used_not_raised_when_out_all_morning() -> None:
    h = home()
    learn(h, 8)
    day = [e for e in normal_day() if not 7.5 < e[0] < 12.5]
    day += [(7.6, "front-door", Q.CONTACT, 1.0), (7.61, "front-door", Q.CONTACT, 0.0)]
    day += [(12.4, "front-door", Q.CONTACT, 1.0), (12.41, "front-door", Q.CONTACT, 0.0)]
    live(h, day)
    assert h.of("kitchen_not_used") == []
    assert h.of("inactivity") == []


def test_a_normal_fortnight_raises_nothing() -> None:
    h = home(mat=False)
    learn(h, 14)
    assert names(h, None) == []


def test_a_still_night_in_bed_is_sleep_not_inactivity() -> None:
    """Learned nights have a movement every 50 min; then a night on the mat without one:
    past the learned limit, yet no alarm (falls at night are out_of_bed's). The same
    stillness off the mat is raised."""
    for on_mat in (True, False):
        h = home(mat=True)
        learn(h, 8)
        evening = [e for e in normal_day() if e[0] < 22.4]
        live(h, [*evening, (22.5, "bed-mat", Q.OCCUPANCY, 1.0 if on_mat else 0.0)])
        live(h, [(5.8, "bed-mat", Q.OCCUPANCY, 0.0), (5.85, "kitchen-motion", Q.MOTION, 1.0)], 6.0)
        assert ("inactivity" in names(h)) is not on_mat
        assert names(h) == [] or not on_mat

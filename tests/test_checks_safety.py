"""Pull cord and water leak: raised synchronously with the reading, never capped, no repeats
while raised, and cleared so that the next emergency is a new alarm."""

from __future__ import annotations

from hub.events import AlertState, Quantity, Severity
from tests.test_checks_harness import T0, Harness, make_config

Q = Quantity
MIN = 60.0
RAISED, ACTIVE, CLEARED = AlertState.RAISED, AlertState.ACTIVE, AlertState.CLEARED


def test_a_pull_cord_is_raised_before_on_reading_returns() -> None:
    h = Harness()
    h.advance(42)
    h.read("pull-cord", Q.BUTTON, 1)
    (alert,) = h.alerts  # no tick has run since: the reading itself raised it
    assert (alert.check, alert.state, alert.severity) == ("pull_cord", RAISED, Severity.URGENT)
    assert (alert.room, alert.sensor_id) == ("Bathroom", "pull-cord")
    assert alert.stamp == h.stamp() and alert.start == T0 + 42
    assert alert.evidence["presses"] == 1


def test_more_presses_update_the_alarm_instead_of_repeating_it() -> None:
    h = Harness()
    h.read("pull-cord", Q.BUTTON, 1)
    h.read("pull-cord", Q.BUTTON, 0)  # a release is not news
    h.advance(10)
    h.read("pull-cord", Q.BUTTON, 1)  # again within a minute: counted, not yet sent
    assert [a.state for a in h.alerts] == [RAISED]
    h.advance(2 * MIN)  # the next tick after a minute sends the count
    assert [a.state for a in h.alerts] == [RAISED, ACTIVE]
    assert h.alerts[1].evidence["presses"] == 2
    h.read("pull-cord", Q.BUTTON, 1)
    assert [a.state for a in h.alerts] == [RAISED, ACTIVE, ACTIVE]
    assert h.alerts[2].evidence["presses"] == 3


def test_a_pull_cord_alarm_clears_after_a_quiet_quarter_hour_and_can_be_raised_again() -> None:
    h = Harness()
    h.read("pull-cord", Q.BUTTON, 1)
    h.advance(14 * MIN)
    assert [a.state for a in h.alerts] == [RAISED]
    h.advance(2 * MIN)
    assert [a.state for a in h.alerts] == [RAISED, CLEARED]
    assert h.alerts[1].end == T0 + 15 * MIN
    h.read("pull-cord", Q.BUTTON, 1)
    assert [a.state for a in h.alerts] == [RAISED, CLEARED, RAISED]
    assert h.alerts[2].start == h.wall


def test_a_leak_is_raised_at_once_and_clears_after_ten_dry_minutes() -> None:
    h = Harness(make_config(checks={"daily_cap": 1}))
    h.read("kitchen-leak", Q.LEAK, 1)
    assert [(a.check, a.state, a.severity) for a in h.alerts] == [
        ("water_leak", RAISED, Severity.URGENT)
    ]
    h.advance(MIN)
    h.read("kitchen-leak", Q.LEAK, 0)
    h.advance(5 * MIN)
    h.read("kitchen-leak", Q.LEAK, 1)  # wet again: the same leak, no repeat
    h.advance(MIN)
    h.read("kitchen-leak", Q.LEAK, 0)
    h.advance(9 * MIN)
    assert [a.state for a in h.alerts] == [RAISED]
    h.advance(2 * MIN)
    _, cleared = h.alerts
    assert cleared.state is CLEARED
    assert cleared.end == T0 + 7 * MIN  # when it went dry for good
    assert cleared.evidence["wet_readings"] == 2

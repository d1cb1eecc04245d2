"""Alert hygiene shared by every check: one place decides when a condition is raised, updated
and cleared, so no check can flood the night carer on its own.

A `Condition` is one thing that can be wrong (the bedroom is cold, the bathroom cord was
pulled). `Condition.track` gives it hysteresis and minimum durations; an `AlertChannel`
turns its steps into `Alert`s: never a second raise while raised, a clear (with end time and
evidence) when it ends, escalation as an `active` update, and the daily cap per check.
All times in a condition are on the checks' Timeline (see timeline.py); only the reported
`start` and `end` are wall-clock times, worked out from the stamp of the moment they are
reported, so a clock corrected by NTP in the meantime is believed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.checks.timeline import LocalClock
from hub.events import Alert, AlertState, JSONValue, Severity, Stamp

log = logging.getLogger(__name__)

Evidence = Mapping[str, JSONValue]

_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.URGENT: 2}


def more_severe(a: Severity, b: Severity) -> bool:
    """Whether `a` is more severe than `b`."""
    return _SEVERITY_RANK[a] > _SEVERITY_RANK[b]


class Step(enum.Enum):
    NONE = "none"
    RAISE = "raise"
    CLEAR = "clear"


@dataclass(slots=True)
class Condition:
    """One condition's lifecycle: quiet -> pending (`since` set) -> raised -> quiet."""

    room: str
    sensor_id: str | None
    since: float | None = None  # when the condition began (timeline s); None while quiet
    raised: bool = False
    severity: Severity = Severity.WARNING
    start_wall: float | None = None  # the wall-clock start reported with the raise
    exit_since: float | None = None  # since when the clear criterion has held (timeline s)
    updated_t: float | None = None  # the last lifecycle event for it (timeline s)
    capped: bool = False  # a raise was refused by the daily cap (counted once)

    @property
    def pending(self) -> bool:
        return self.since is not None and not self.raised

    def track(
        self,
        t: float,
        inside: bool,
        outside: bool,
        min_on_s: float,
        min_off_s: float = 0.0,
        abandon: bool | None = None,
    ) -> Step:
        """Advance the lifecycle with the latest evidence at `t`.

        `inside`: the entry criterion holds now (e.g. below 18 °C). `outside`: the exit
        criterion holds now (e.g. at or above 18.5 °C); between the two nothing changes,
        which is the hysteresis. A pending condition is raised once it has lasted
        `min_on_s` and is still inside; it is abandoned when `abandon` holds (default:
        `outside`). A raised one clears once `outside` has held for `min_off_s` without a
        break.
        """
        if not self.raised:
            if self.since is None:
                if not inside:
                    return Step.NONE
                self.since = t
            elif outside if abandon is None else abandon:
                self.reset()
                return Step.NONE
            return Step.RAISE if inside and t - self.since >= min_on_s else Step.NONE
        if outside:
            if self.exit_since is None:
                self.exit_since = t
            return Step.CLEAR if t - self.exit_since >= min_off_s else Step.NONE
        self.exit_since = None
        return Step.NONE

    def reset(self) -> None:
        self.since = None
        self.raised = False
        self.start_wall = None
        self.exit_since = None
        self.capped = False

    def to_state(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "sensor_id": self.sensor_id,
            "since": self.since,
            "raised": self.raised,
            "severity": self.severity.value,
            "start_wall": self.start_wall,
            "exit_since": self.exit_since,
            "updated_t": self.updated_t,
            "capped": self.capped,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Condition:
        return cls(
            room=str(state["room"]),
            sensor_id=state["sensor_id"],
            since=_opt_float(state["since"]),
            raised=bool(state["raised"]),
            severity=Severity(state["severity"]),
            start_wall=_opt_float(state["start_wall"]),
            exit_since=_opt_float(state["exit_since"]),
            updated_t=_opt_float(state["updated_t"]),
            capped=bool(state["capped"]),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class AlertStats:
    raised: int = 0
    active: int = 0
    cleared: int = 0
    capped: int = 0  # conditions whose raise the daily cap refused
    delivery_errors: int = 0  # on_alert raised; the alert may not have been stored


@dataclass
class AlertSink:
    """Where every check's alerts go: counts raises per check per local day for the cap."""

    on_alert: Callable[[Alert], None]
    local: LocalClock
    daily_cap: int
    stats: AlertStats = field(default_factory=AlertStats)
    dirty: bool = False  # an alert went out since the state was last saved
    _counts: dict[str, list[int]] = field(default_factory=dict)  # check -> [local day, raises]

    def may_raise(self, check: str, wall: float) -> bool:
        entry = self._counts.get(check)
        return entry is None or entry[0] != self.local.day(wall) or entry[1] < self.daily_cap

    def count_raise(self, check: str, wall: float) -> None:
        day = self.local.day(wall)
        entry = self._counts.get(check)
        if entry is None or entry[0] != day:
            self._counts[check] = [day, 1]
        else:
            entry[1] += 1

    def raised_today(self, check: str, wall: float) -> int:
        entry = self._counts.get(check)
        return entry[1] if entry is not None and entry[0] == self.local.day(wall) else 0

    def emit(self, alert: Alert) -> None:
        self.dirty = True
        if alert.state is AlertState.RAISED:
            self.stats.raised += 1
        elif alert.state is AlertState.ACTIVE:
            self.stats.active += 1
        else:
            self.stats.cleared += 1
        try:
            self.on_alert(alert)
        except Exception:  # a failing consumer must not stop the checks
            self.stats.delivery_errors += 1
            log.exception("delivering alert %s %s failed", alert.check, alert.state.value)

    def state(self) -> dict[str, Any]:
        return {"counts": {check: list(entry) for check, entry in self._counts.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._counts = {str(c): [int(e[0]), int(e[1])] for c, e in state["counts"].items()}


class AlertChannel:
    """One check's way out: builds its Alerts and applies the hygiene rules to them."""

    __slots__ = ("capped", "check", "sink")

    def __init__(self, sink: AlertSink, check: str, capped: bool) -> None:
        self.sink = sink
        self.check = check
        self.capped = capped  # False for immediate safety alarms: never capped

    def raise_(
        self, cond: Condition, severity: Severity, stamp: Stamp, t: float, evidence: Evidence
    ) -> bool:
        """Raise `cond` unless it is already raised or the daily cap says no. The reported
        start is when the condition began, on the current stamp's wall clock."""
        if cond.raised:
            return False
        wall = stamp.wall_time
        if self.capped and not self.sink.may_raise(self.check, wall):
            if not cond.capped:
                cond.capped = True
                self.sink.stats.capped += 1
                log.info("%s: daily cap reached; not raising for %s", self.check, cond.room)
            return False
        if cond.since is None:
            cond.since = t
        cond.raised = True
        cond.capped = False
        cond.severity = severity
        cond.start_wall = wall - max(0.0, t - cond.since)
        cond.exit_since = None
        cond.updated_t = t
        if self.capped:
            self.sink.count_raise(self.check, wall)
        self._emit(cond, AlertState.RAISED, stamp, None, evidence)
        return True

    def update(
        self, cond: Condition, severity: Severity, stamp: Stamp, t: float, evidence: Evidence
    ) -> None:
        """An `active` step for a raised condition: escalation or fresh evidence."""
        if not cond.raised:
            return
        cond.severity = severity
        cond.updated_t = t
        self._emit(cond, AlertState.ACTIVE, stamp, None, evidence)

    def clear(self, cond: Condition, stamp: Stamp, t: float, evidence: Evidence) -> None:
        """End `cond`: a `cleared` step if it was raised (its end is when the clear criterion
        began to hold), and back to quiet either way."""
        if cond.raised:
            ended_ago = 0.0 if cond.exit_since is None else max(0.0, t - cond.exit_since)
            cond.updated_t = t
            self._emit(cond, AlertState.CLEARED, stamp, stamp.wall_time - ended_ago, evidence)
        cond.reset()

    def _emit(
        self,
        cond: Condition,
        state: AlertState,
        stamp: Stamp,
        end: float | None,
        evidence: Evidence,
    ) -> None:
        start = cond.start_wall if cond.start_wall is not None else stamp.wall_time
        alert = Alert(
            self.check,
            cond.severity,
            state,
            cond.room,
            cond.sensor_id,
            start,
            end,
            dict(evidence),
            stamp,
        )
        self.sink.emit(alert)

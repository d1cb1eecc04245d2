"""Alerts against labels: which anomalies were detected, how late, and which alerts were false.

Independent of how the alerts were made: it takes labels, the homes' spans and a list of alert
dicts shaped like `hearth replay --format jsonl` output lines (check, state, room, sensor,
time, ...) with a "home" key added by whoever collected them.

Rules (the report repeats them):
- Only "raised" alerts count; "cleared" (and any other state) only end a condition.
- A raised alert detects a label of its home when its check is one of the label's checks, its
  time lies between the label's onset (less LEAD_S) and its end plus a grace (GRACE_S; for a
  check over a rolling window, the window, since its rule can hold that long after the
  condition has passed), and it is about the label's sensor or rooms when the label names them.
- A raised alert that detects nothing, is no allowed side effect (a label's `also`) and no
  forbidden check (a label's `forbidden`), is a false alarm. False alarms on anomaly-free days
  (local calendar days that no injected anomaly touches) are the ones the target is about;
  the rest are reported too.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hub.evaluation.labels import Label, parse_time

LEAD_S = 60.0  # clocks and rounding: an alert this much before the onset still counts
GRACE_S = 3600.0  # an alert up to an hour after the end is still about the anomaly
# Checks over a rolling window (DESIGN's damp: any 12 h; PM2.5: a 24 h mean).
WINDOW_GRACE_S = {"damp": 12 * 3600.0, "pm25": 24 * 3600.0}


def grace(check: str) -> float:
    return WINDOW_GRACE_S.get(check, GRACE_S)


SIMULATED = "simulated"
REAL = "real"


@dataclass(frozen=True)
class HomeSpan:
    """The time a home's data covers, and the local time its days are counted in."""

    home: str
    begin: float
    end: float
    timezone: str = "Europe/London"
    kind: str = SIMULATED


@dataclass(frozen=True)
class RaisedAlert:
    home: str
    check: str
    t: float
    room: str | None
    sensor: str | None
    severity: str | None

    def brief(self, tz: dt.tzinfo) -> dict[str, Any]:
        return {
            "home": self.home,
            "check": self.check,
            "time": dt.datetime.fromtimestamp(round(self.t), tz).isoformat(),
            "room": self.room,
            "sensor": self.sensor,
            "severity": self.severity,
        }


@dataclass
class Outcome:
    """What became of one label."""

    label: Label
    detected_by: str | None = None
    first_alert: float | None = None
    alerts: int = 0
    side_effects: Counter[str] = field(default_factory=Counter)
    forbidden_hits: Counter[str] = field(default_factory=Counter)

    @property
    def detected(self) -> bool:
        return self.first_alert is not None

    @property
    def delay_s(self) -> float | None:
        return None if self.first_alert is None else self.first_alert - self.label.start


@dataclass
class Score:
    spans: dict[str, HomeSpan]
    outcomes: list[Outcome]
    false_alarms: list[tuple[RaisedAlert, bool]]  # (alert, on an anomaly-free day)
    days: dict[str, float]  # home -> home-days covered
    free_days: dict[str, float]  # home -> anomaly-free home-days
    alerts: list[RaisedAlert] = field(default_factory=list)  # every raised alert, in time order
    raised: int = 0
    cleared: int = 0
    malformed: int = 0

    def homes(self, kind: str) -> list[str]:
        return sorted(h for h, span in self.spans.items() if span.kind == kind)

    def outcomes_of(self, kind: str, *, injected: bool = True) -> list[Outcome]:
        homes = set(self.homes(kind))
        return [o for o in self.outcomes if o.label.home in homes and o.label.injected == injected]

    def alerts_of(self, kind: str) -> list[RaisedAlert]:
        homes = set(self.homes(kind))
        return [a for a in self.alerts if a.home in homes]

    def false_of(self, kind: str, *, free_only: bool = True) -> list[RaisedAlert]:
        homes = set(self.homes(kind))
        return [a for a, free in self.false_alarms if a.home in homes and (free or not free_only)]

    def free_days_of(self, kind: str) -> float:
        return sum(self.free_days.get(h, 0.0) for h in self.homes(kind))

    def days_of(self, kind: str) -> float:
        return sum(self.days.get(h, 0.0) for h in self.homes(kind))


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def _about(label: Label, alert: RaisedAlert) -> bool:
    if label.sensor is not None and alert.sensor != label.sensor:
        return False
    if label.rooms and alert.room:
        return _norm(alert.room) in {_norm(r) for r in label.rooms}
    return True


def _within(label: Label, alert: RaisedAlert) -> bool:
    return label.earliest - LEAD_S <= alert.t <= label.end + grace(alert.check)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def raised_alerts(alerts: Iterable[Mapping[str, Any]]) -> tuple[list[RaisedAlert], int, int]:
    """(raised alerts in time order, cleared count, malformed count)."""
    raised: list[RaisedAlert] = []
    cleared = malformed = 0
    for alert in alerts:
        state = alert.get("state")
        if state == "cleared":
            cleared += 1
            continue
        if state != "raised":
            continue
        try:
            t = parse_time(str(alert["time"]))
            check = str(alert["check"])
            home = str(alert["home"])
        except (KeyError, ValueError):
            malformed += 1
            continue
        raised.append(
            RaisedAlert(
                home,
                check,
                t,
                _text(alert.get("room")),
                _text(alert.get("sensor", alert.get("sensor_id"))),
                _text(alert.get("severity")),
            )
        )
    raised.sort(key=lambda a: a.t)
    return raised, cleared, malformed


def _local_days(span: HomeSpan) -> Iterable[tuple[dt.date, float, float]]:
    """(date, start, end) of each local day the span touches, clipped to the span."""
    tz = ZoneInfo(span.timezone)
    day = dt.datetime.fromtimestamp(span.begin, tz).date()
    while True:
        start = dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        if start >= span.end:
            return
        nxt = day + dt.timedelta(days=1)
        end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        yield day, start, end
        day = nxt


def score(
    labels: Sequence[Label], alerts: Iterable[Mapping[str, Any]], spans: Sequence[HomeSpan]
) -> Score:
    by_home: dict[str, list[Outcome]] = {}
    outcomes = [Outcome(label) for label in labels]
    for outcome in outcomes:
        by_home.setdefault(outcome.label.home, []).append(outcome)
    span_of = {span.home: span for span in spans}

    days: dict[str, float] = {}
    free_days: dict[str, float] = {}
    anomaly_dates: dict[str, set[dt.date]] = {}
    for span in spans:
        windows = [
            (o.label.earliest, o.label.end + max(map(grace, o.label.checks), default=GRACE_S))
            for o in by_home.get(span.home, [])
            if o.label.injected
        ]
        dates: set[dt.date] = set()
        total = free = 0.0
        for day, start, end in _local_days(span):
            share = (min(end, span.end) - max(start, span.begin)) / (end - start)
            total += share
            if any(a < end and b > start for a, b in windows):
                dates.add(day)
            else:
                free += share
        days[span.home], free_days[span.home] = total, free
        anomaly_dates[span.home] = dates

    raised, cleared, malformed = raised_alerts(alerts)
    false_alarms: list[tuple[RaisedAlert, bool]] = []
    for alert in raised:
        mine = by_home.get(alert.home, [])
        hits = [o for o in mine if alert.check in o.label.checks and _within(o.label, alert)]
        hits = [o for o in hits if _about(o.label, alert)]
        for outcome in hits:
            outcome.alerts += 1
            if outcome.first_alert is None:
                outcome.first_alert, outcome.detected_by = alert.t, alert.check
        if hits:
            continue
        side = [o for o in mine if alert.check in o.label.also and _within(o.label, alert)]
        for outcome in side:
            outcome.side_effects[alert.check] += 1
        if side:
            continue
        wrong = [o for o in mine if alert.check in o.label.forbidden and _within(o.label, alert)]
        for outcome in wrong:
            outcome.forbidden_hits[alert.check] += 1
        if wrong:
            continue
        home_span = span_of.get(alert.home)
        tz = ZoneInfo(home_span.timezone if home_span else "UTC")
        day = dt.datetime.fromtimestamp(alert.t, tz).date()
        false_alarms.append((alert, day not in anomaly_dates.get(alert.home, set())))
    return Score(
        span_of, outcomes, false_alarms, days, free_days, raised, len(raised), cleared, malformed
    )


# --- summaries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionRow:
    anomaly: str
    checks: tuple[str, ...]
    injected: int
    detected: int
    delay_median_s: float | None
    delay_max_s: float | None
    side_effects: Mapping[str, int]
    forbidden: Mapping[str, int]

    @property
    def rate(self) -> float | None:
        return None if self.injected == 0 else self.detected / self.injected


def detection_rows(outcomes: Sequence[Outcome], order: Sequence[str] = ()) -> list[DetectionRow]:
    """One row per anomaly type (in `order`, then any others), detections and delays."""
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.label.anomaly, []).append(outcome)
    names = [n for n in order if n in groups] + sorted(set(groups) - set(order))
    rows = []
    for name in names:
        group = groups[name]
        delays = [o.delay_s for o in group if o.delay_s is not None]
        side: Counter[str] = Counter()
        wrong: Counter[str] = Counter()
        checks: dict[str, None] = {}
        for o in group:
            side.update(o.side_effects)
            wrong.update(o.forbidden_hits)
            checks.update(dict.fromkeys(o.label.checks))
        rows.append(
            DetectionRow(
                name,
                tuple(checks),
                len(group),
                sum(o.detected for o in group),
                statistics.median(delays) if delays else None,
                max(delays) if delays else None,
                dict(side),
                dict(wrong),
            )
        )
    return rows


@dataclass(frozen=True)
class FalseAlarmRow:
    check: str
    on_free_days: int
    on_anomaly_days: int
    per_home_day: float | None  # on anomaly-free days

    @property
    def per_50_home_days(self) -> float | None:
        return None if self.per_home_day is None else 50.0 * self.per_home_day


def false_alarm_rows(result: Score, kind: str, checks: Sequence[str] = ()) -> list[FalseAlarmRow]:
    """One row per check (those in `checks`, then any others that raised a false alarm)."""
    homes = set(result.homes(kind))
    free: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    for alert, on_free_day in result.false_alarms:
        if alert.home in homes:
            (free if on_free_day else busy)[alert.check] += 1
    days = result.free_days_of(kind)
    names = list(checks) + sorted((set(free) | set(busy)) - set(checks))
    return [
        FalseAlarmRow(name, free[name], busy[name], free[name] / days if days else None)
        for name in names
    ]

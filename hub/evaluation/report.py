"""The evaluation report: a plain-text table for people and the same figures as JSON."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hub.evaluation.scoring import (
    REAL,
    SIMULATED,
    DetectionRow,
    FalseAlarmRow,
    Score,
    detection_rows,
    false_alarm_rows,
)

# The checks of issue 4 (DESIGN.md's table), in the order the report lists them.
CHECKS = (
    "cold_home",
    "overheating",
    "damp",
    "ventilation",
    "pm25",
    "pull_cord",
    "water_leak",
    "night_exit",
    "out_of_bed",
    "inactivity",
    "not_up",
    "night_bathroom",
    "kitchen_not_used",
    "sensor_silent",
    "low_battery",
)
ANOMALY_NAMES = {
    "fall_day": "fall by day",
    "fall_night": "fall at night",
    "night_exit": "night exit",
    "night_bathroom_week": "night bathroom week",
    "cold_spell": "cold spell",
    "damp_week": "damp week",
    "battery_low": "battery running down",
    "sensor_dead": "sensor dead (battery)",
    "rule_cold": "below 18 °C for 2 h+",
    "rule_damp": "RH > 70 % 2 h+ or > 90 % 1 h+ in 12 h",
    "rule_silent": "a sensor not heard for 3 usual intervals (1 h+)",
}
SCORING_NOTES = (
    "How alerts are scored: only raised alerts count. One detects an anomaly when its check is"
    " the expected one,",
    "it is about the labelled sensor or rooms, and it comes between the anomaly's onset and its"
    " end plus 1 h",
    "(12 h for damp, whose rule holds over a 12 h window). Delay runs from when the condition"
    " first holds",
    "(first reading below 18 °C, first battery report at 20 % or less, ...). 'also raised':"
    " alerts of other checks",
    "that fairly follow from the anomaly (damp in a cold spell); not counted either way."
    " Anomaly-free days:",
    "local calendar days that no injected anomaly touches.",
)
DETECTION_TARGET = 0.95
FALSE_ALARMS_PER_50_DAYS_TARGET = 1.0


@dataclass
class HomeInfo:
    name: str
    kind: str
    days: float
    readings: int
    note: str = ""


@dataclass
class Evaluation:
    """Everything a report needs: what was run, how long it took, and the score."""

    params: Mapping[str, Any]
    homes: list[HomeInfo]
    score: Score
    seconds: Mapping[str, float]
    replays: list[Mapping[str, Any]] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(round(seconds))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 60:
        return f"{sign}{s}s" if s else "0s"
    if s < 3600:
        return f"{sign}{minutes}m"
    if s < 2 * 86400:
        return f"{sign}{hours}h{minutes % 60:02d}m"
    return f"{sign}{days}d{hours % 24:02d}h"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


@dataclass(frozen=True)
class Targets:
    detected: int
    injected: int
    sim_false: int
    sim_free_days: float
    real_false: int
    real_days: float

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.injected if self.injected else None

    @property
    def sim_per_50(self) -> float | None:
        return 50 * self.sim_false / self.sim_free_days if self.sim_free_days else None

    @property
    def real_per_50(self) -> float | None:
        return 50 * self.real_false / self.real_days if self.real_days else None

    def verdicts(self) -> dict[str, bool | None]:
        rate, sim, real = self.detection_rate, self.sim_per_50, self.real_per_50
        return {
            "detection": None if rate is None else rate >= DETECTION_TARGET,
            "false_alarms_simulated": None
            if sim is None
            else sim <= FALSE_ALARMS_PER_50_DAYS_TARGET,
            "false_alarms_real": None if real is None else real <= FALSE_ALARMS_PER_50_DAYS_TARGET,
        }


def targets(score: Score) -> Targets:
    sim = score.outcomes_of(SIMULATED)
    return Targets(
        detected=sum(o.detected for o in sim),
        injected=len(sim),
        sim_false=len(score.false_of(SIMULATED)),
        sim_free_days=score.free_days_of(SIMULATED),
        real_false=len(score.false_of(REAL)),
        real_days=score.free_days_of(REAL),
    )


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items())) or "-"


def render_text(ev: Evaluation, *, max_listed: int = 25) -> str:
    score = ev.score
    p = ev.params
    sims = [h for h in ev.homes if h.kind == SIMULATED]
    reals = [h for h in ev.homes if h.kind == REAL]
    out = ["Hearth evaluation: anomaly checks replayed through `hearth replay`", ""]
    if sims:
        out.append(
            f"Simulated homes: {len(sims)} x {p.get('days')} days from {p.get('start')}"
            f" (seed {p.get('seed')}, {p.get('warmup_days')} clean days first):"
            f" {score.days_of(SIMULATED):.1f} home-days,"
            f" {score.free_days_of(SIMULATED):.1f} of them anomaly-free;"
            f" {sum(h.readings for h in sims):,} readings"
        )
    for home in reals:
        out.append(
            f"Real home {home.name}: {home.days:.1f} home-days, {home.readings:,} readings"
            f" ({home.note})"
        )
    out.append(
        f"Alerts printed by the replays: {score.raised} raised, {score.cleared} cleared"
        + (f", {score.malformed} malformed" if score.malformed else "")
        + f". Time: {ev.seconds.get('build', 0):.0f} s building homes,"
        f" {ev.seconds.get('replay', 0):.0f} s replaying,"
        f" {ev.seconds.get('total', 0):.0f} s in all."
    )
    failed = [r for r in ev.replays if r.get("returncode")]
    for run in failed:
        out.append(f"  replay of {run['home']} FAILED (exit {run['returncode']}): see {run['log']}")
    out.append("")

    rows = detection_rows(score.outcomes_of(SIMULATED), list(ANOMALY_NAMES))
    t = targets(score)
    verdicts = t.verdicts()
    out.append("Detection (simulated homes; delay = first matching alert - anomaly start)")
    out.extend(_detection_table(rows, t))
    out.append(
        f"Target: at least {DETECTION_TARGET:.0%} of injected anomalies detected:"
        f" {_percent(t.detection_rate)} -> {_verdict(verdicts['detection'])}"
    )
    out.append("")

    out.append(
        "False alarms (raised alerts matching no label; per 50 home-days = on anomaly-free days)"
    )
    out.extend(_false_alarm_table(score))
    out.append(
        f"Target: at most {FALSE_ALARMS_PER_50_DAYS_TARGET:g} per home per 50 anomaly-free days:"
        f" simulated {_rate(t.sim_per_50)} -> {_verdict(verdicts['false_alarms_simulated'])};"
        f" real {_rate(t.real_per_50)} -> {_verdict(verdicts['false_alarms_real'])}"
    )
    if score.outcomes_of(REAL, injected=False):
        out.append("")
        out.append(
            "Real homes: what DESIGN's rules find in the recorded data itself (nothing injected)."
            " An alert during one is justified, not false; it is counted in 'real: raised' above"
            " but not in 'not justified'."
        )
        out.extend(_reference_table(score))
    wrong = sum(sum(o.forbidden_hits.values()) for o in score.outcomes)
    if wrong:
        out.append(
            "Wrong-check alerts during anomalies (e.g. inactivity while a sensor was dead):"
            f" {wrong}"
        )
    listed = sorted(score.false_alarms, key=lambda item: (item[0].home, item[0].t))
    if listed:
        out.append("")
        out.append(f"False alarms listed (first {min(max_listed, len(listed))} of {len(listed)}):")
        for alert, free in listed[:max_listed]:
            tz = ZoneInfo(score.spans[alert.home].timezone) if alert.home in score.spans else dt.UTC
            when = dt.datetime.fromtimestamp(round(alert.t), tz).strftime("%Y-%m-%d %H:%M %Z")
            where = ", ".join(x for x in (alert.room, alert.sensor) if x)
            day = "anomaly-free day" if free else "anomaly day"
            out.append(f"  {alert.home} {when} {alert.check} ({where}; {day})")
    missed = [o for o in score.outcomes_of(SIMULATED) if not o.detected]
    if missed:
        out.append("")
        out.append(f"Missed anomalies (first {min(max_listed, len(missed))} of {len(missed)}):")
        for o in missed[:max_listed]:
            tz = (
                ZoneInfo(score.spans[o.label.home].timezone)
                if o.label.home in score.spans
                else dt.UTC
            )
            when = dt.datetime.fromtimestamp(round(o.label.start), tz).strftime("%Y-%m-%d %H:%M")
            out.append(
                f"  {o.label.home} {ANOMALY_NAMES.get(o.label.anomaly, o.label.anomaly)}"
                f" from {when} for {duration(o.label.end - o.label.start)}"
                f" (expected {', '.join(o.label.checks)})"
            )
    out.append("")
    out.extend(SCORING_NOTES)
    if ev.citations:
        out.append("")
        out.extend(f"Data: {c}" for c in ev.citations)
    return "\n".join(out) + "\n"


def _detection_table(rows: Sequence[DetectionRow], t: Targets) -> list[str]:
    body = [
        [
            ANOMALY_NAMES.get(r.anomaly, r.anomaly),
            ", ".join(r.checks),
            f"{r.detected}/{r.injected}",
            _percent(r.rate),
            duration(r.delay_median_s),
            duration(r.delay_max_s),
            _counts(r.side_effects),
        ]
        for r in rows
    ]
    body.append(
        ["all anomalies", "", f"{t.detected}/{t.injected}", _percent(t.detection_rate), "", "", ""]
    )
    header = [
        "anomaly",
        "expected check",
        "detected",
        "rate",
        "median delay",
        "max delay",
        "also raised",
    ]
    return _table(header, body, right={2, 3, 4, 5})


def _false_alarm_table(score: Score) -> list[str]:
    sim = {r.check: r for r in false_alarm_rows(score, SIMULATED, CHECKS)}
    real = {r.check: r for r in false_alarm_rows(score, REAL, CHECKS)}
    real_all = Counter(a.check for a in score.alerts_of(REAL))
    names = list(dict.fromkeys([*CHECKS, *sim, *real]))
    empty = FalseAlarmRow("", 0, 0, None)

    def cells(name: str) -> list[str]:
        s, r = sim.get(name, empty), real.get(name, empty)
        return [
            name,
            str(s.on_free_days),
            _rate(s.per_50_home_days),
            str(s.on_anomaly_days),
            str(real_all[name]),
            str(r.on_free_days),
            _rate(r.per_50_home_days),
        ]

    body = [cells(n) for n in names]
    t = targets(score)
    sim_busy = len(score.false_of(SIMULATED, free_only=False)) - t.sim_false
    body.append(
        [
            "all checks",
            str(t.sim_false),
            _rate(t.sim_per_50),
            str(sim_busy),
            str(sum(real_all.values())),
            str(t.real_false),
            _rate(t.real_per_50),
        ]
    )
    header = [
        "check",
        "sim: free days",
        "per 50 home-days",
        "sim: anomaly days",
        "real: raised",
        "real: not justified",
        "per 50 home-days",
    ]
    return _table(header, body, right={1, 2, 3, 4, 5, 6})


def _reference_table(score: Score) -> list[str]:
    rows = detection_rows(score.outcomes_of(REAL, injected=False), list(ANOMALY_NAMES))
    body = [
        [
            ANOMALY_NAMES.get(r.anomaly, r.anomaly),
            ", ".join(r.checks) or "-",
            str(r.injected),
            f"{r.detected}/{r.injected}" if r.checks else "-",
            _counts(r.side_effects),
        ]
        for r in rows
    ]
    header = ["condition in the data (DESIGN rule)", "check", "episodes", "alerted", "also raised"]
    return _table(header, body, right={2, 3})


def _row_json(row: DetectionRow) -> dict[str, Any]:
    return {
        "anomaly": row.anomaly,
        "checks": list(row.checks),
        "injected": row.injected,
        "detected": row.detected,
        "rate": row.rate,
        "delay_median_s": row.delay_median_s,
        "delay_max_s": row.delay_max_s,
        "also_raised": dict(row.side_effects),
        "forbidden_raised": dict(row.forbidden),
    }


def to_json(ev: Evaluation) -> dict[str, Any]:
    score = ev.score
    t = targets(score)
    tz_of = {h: ZoneInfo(s.timezone) for h, s in score.spans.items()}
    false_rows: dict[str, list[dict[str, Any]]] = {}
    for kind in (SIMULATED, REAL):
        false_rows[kind] = [
            {
                "check": r.check,
                "on_free_days": r.on_free_days,
                "on_anomaly_days": r.on_anomaly_days,
                "per_home_day": r.per_home_day,
                "per_50_home_days": r.per_50_home_days,
            }
            for r in false_alarm_rows(score, kind, CHECKS)
        ]
    return {
        "params": dict(ev.params),
        "seconds": dict(ev.seconds),
        "homes": [h.__dict__ for h in ev.homes],
        "home_days": {"simulated": score.days_of(SIMULATED), "real": score.days_of(REAL)},
        "anomaly_free_home_days": {
            "simulated": score.free_days_of(SIMULATED),
            "real": score.free_days_of(REAL),
        },
        "alerts": {"raised": score.raised, "cleared": score.cleared, "malformed": score.malformed},
        "detection": [
            _row_json(r) for r in detection_rows(score.outcomes_of(SIMULATED), list(ANOMALY_NAMES))
        ],
        "false_alarms": false_rows,
        "real_raised_by_check": dict(Counter(a.check for a in score.alerts_of(REAL))),
        "real_reference_conditions": [
            _row_json(r)
            for r in detection_rows(score.outcomes_of(REAL, injected=False), list(ANOMALY_NAMES))
        ],
        "targets": {
            "detection_rate": t.detection_rate,
            "detected": t.detected,
            "injected": t.injected,
            "false_alarms_per_50_home_days": {"simulated": t.sim_per_50, "real": t.real_per_50},
            "verdicts": t.verdicts(),
        },
        "labels": [
            {
                **o.label.to_json(tz_of.get(o.label.home, dt.UTC)),
                "detected_by": o.detected_by,
                "delay_s": o.delay_s,
                "matching_alerts": o.alerts,
                "also_raised": dict(o.side_effects),
                "forbidden_raised": dict(o.forbidden_hits),
            }
            for o in score.outcomes
        ],
        "false_alarm_list": [
            {**a.brief(tz_of.get(a.home, dt.UTC)), "anomaly_free_day": free}
            for a, free in score.false_alarms
        ],
        "replays": list(ev.replays),
        "citations": list(ev.citations),
    }

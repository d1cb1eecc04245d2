"""Labelled anomalies: what was injected into a home, when, and which checks should see it.

A label is the ground truth the scoring compares alerts with. It is deliberately independent of
how the data or the alerts were made, so the same scoring serves simulated homes, real data
labelled by hand, and alert lists written in a test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any


def iso(t: float, tz: tzinfo = UTC) -> str:
    """Unix seconds as ISO 8601 with the offset of `tz` (whole seconds)."""
    return datetime.fromtimestamp(round(t), tz).isoformat()


def parse_time(text: str) -> float:
    """ISO 8601 to Unix seconds; a time without an offset is taken as UTC."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class Label:
    """One injected anomaly.

    `start` is when the condition holds (detection delay is measured from it); `onset` is when
    its cause began (heating failed, a battery began to fail), the earliest an alert can count.
    `checks`: any one of them detects it. `also`: checks that may fairly fire as a side effect
    (a damp alert while the heating is broken), neither a detection nor a false alarm.
    `forbidden`: checks that must not fire during it (inactivity while a motion sensor is dead).
    `sensor` and `rooms`, when given, restrict which alerts match.
    `injected` is False for a condition found in recorded data rather than put there (a real
    flat below 18 °C at night): it can justify an alert, but it makes no day an anomaly day.
    """

    home: str
    anomaly: str
    start: float
    end: float
    checks: tuple[str, ...]
    onset: float | None = None
    also: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    sensor: str | None = None
    rooms: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    injected: bool = True

    @property
    def earliest(self) -> float:
        return self.start if self.onset is None else min(self.onset, self.start)

    def to_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        return {
            "home": self.home,
            "anomaly": self.anomaly,
            "start": iso(self.start, tz),
            "end": iso(self.end, tz),
            "checks": list(self.checks),
            "onset": None if self.onset is None else iso(self.onset, tz),
            "also": list(self.also),
            "forbidden": list(self.forbidden),
            "sensor": self.sensor,
            "rooms": list(self.rooms),
            "details": dict(self.details),
            "injected": self.injected,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Label:
        onset = data.get("onset")
        return cls(
            home=str(data["home"]),
            anomaly=str(data["anomaly"]),
            start=parse_time(str(data["start"])),
            end=parse_time(str(data["end"])),
            checks=tuple(str(c) for c in data["checks"]),
            onset=None if onset is None else parse_time(str(onset)),
            also=tuple(str(c) for c in data.get("also", ())),
            forbidden=tuple(str(c) for c in data.get("forbidden", ())),
            sensor=None if data.get("sensor") is None else str(data["sensor"]),
            rooms=tuple(str(r) for r in data.get("rooms", ())),
            details=dict(data.get("details", {})),
            injected=bool(data.get("injected", True)),
        )


def write_labels(path: Path, labels: Sequence[Label], tz: tzinfo = UTC) -> None:
    path.write_text(json.dumps([label.to_json(tz) for label in labels], indent=2) + "\n")


def read_labels(paths: Iterable[Path]) -> list[Label]:
    labels: list[Label] = []
    for path in paths:
        labels.extend(Label.from_json(item) for item in json.loads(path.read_text()))
    return labels

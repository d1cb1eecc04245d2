"""Alerts as one flat JSON object each: what `hearth replay` prints, one per line, and what an
evaluation reads back. Times are ISO 8601 in the hub's time zone, so a council officer
reading the output sees the resident's local time."""

from __future__ import annotations

from typing import Any

from hub.checks.timeline import LocalClock
from hub.events import Alert


def alert_record(alert: Alert, local: LocalClock) -> dict[str, Any]:
    """check, severity, state, room, sensor, time (of this step), start, end, evidence."""
    return {
        "check": alert.check,
        "severity": alert.severity.value,
        "state": alert.state.value,
        "room": alert.room,
        "sensor": alert.sensor_id,
        "time": local.isoformat(alert.stamp.wall_time),
        "start": local.isoformat(alert.start),
        "end": None if alert.end is None else local.isoformat(alert.end),
        "clock_synced": alert.stamp.clock_synced,
        "evidence": dict(alert.evidence),
    }

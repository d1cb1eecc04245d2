"""Small builders for events in tests, so each test says only what matters to it."""

from __future__ import annotations

from hub.events import (
    Alert,
    AlertState,
    Quantity,
    Reading,
    Severity,
    Stamp,
    SystemEvent,
    SystemKind,
)

T0 = 1_764_316_800.0  # 2025-11-28 08:00 UTC


def stamp(t: float = 0.0, *, synced: bool = True) -> Stamp:
    return Stamp(T0 + t, synced, t)


def reading(
    t: float = 0.0,
    sensor: str = "lounge-climate",
    value: float = 20.0,
    quantity: Quantity = Quantity.TEMPERATURE,
) -> Reading:
    return Reading(sensor, quantity, value, stamp(t))


def alert(
    t: float = 0.0,
    check: str = "pull_cord",
    room: str = "bathroom",
    state: AlertState = AlertState.RAISED,
    sensor: str | None = "pull-cord",
) -> Alert:
    return Alert(
        check, Severity.URGENT, state, room, sensor, T0 + t, None, {"held_s": 1.0}, stamp(t)
    )


def system(t: float = 0.0) -> SystemEvent:
    return SystemEvent(SystemKind.HUB_STARTED, {"version": "test"}, stamp(t))

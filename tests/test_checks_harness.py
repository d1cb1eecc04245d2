"""A harness for the check tests (no tests here): a small configured home, an engine, and a
clock the test moves by hand, with separate control of the wall and monotonic clocks so that
NTP jumps and restarts can be staged exactly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hub.checks import Check, CheckEngine, CheckStateStore
from hub.clock import VirtualClock
from hub.config import HubConfig
from hub.events import Alert, AlertState, Quantity, Reading, Stamp

T0 = 1_764_316_800.0  # 2025-11-28 08:00 UTC (a Friday; GMT, so local time = UTC)

SENSORS: tuple[tuple[str, str, str, str], ...] = (
    ("living-climate", "climate", "Living room", "living_room"),
    ("bedroom-climate", "climate", "Bedroom", "bedroom"),
    ("bathroom-climate", "climate", "Bathroom", "bathroom"),
    ("kitchen-air", "air_quality", "Kitchen", "kitchen"),
    ("bedroom-motion", "motion", "Bedroom", "bedroom"),
    ("hall-motion", "motion", "Hallway", "hallway"),
    ("pull-cord", "button", "Bathroom", "bathroom"),
    ("kitchen-leak", "leak", "Kitchen", "kitchen"),
)


def make_config(
    sensors: Iterable[tuple[str, str, str, str]] = SENSORS,
    checks: Mapping[str, Any] | None = None,
    timezone: str = "Europe/London",
    data_dir: Path = Path("/tmp/hearth-checks-test"),
) -> HubConfig:
    return HubConfig.model_validate(
        {
            "hub": {"name": "test", "timezone": timezone, "data_dir": str(data_dir)},
            "sensors": [
                {"id": sid, "kind": kind, "room": room, "role": role, "source": "simulated"}
                for sid, kind, room, role in sensors
            ],
            "checks": dict(checks or {}),
        }
    )


class Harness:
    """An engine on a hand-moved clock. `advance` ticks every `tick_s` on the way."""

    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        start: float = T0,
        store: CheckStateStore | None = None,
        checks: Sequence[type[Check]] | None = None,
        tick_s: float = 60.0,
        mono: float = 0.0,
        synced: bool = True,
    ) -> None:
        self.config = config or make_config()
        self.wall = start
        self.mono = mono
        self.synced = synced
        self.tick_s = tick_s
        self.alerts: list[Alert] = []
        self.clock = VirtualClock(start)
        self.store = store
        self.engine = CheckEngine(
            self.config, self.clock, self.alerts.append, store, checks=checks, tick_s=tick_s
        )
        self._next_tick = mono + tick_s

    def stamp(self) -> Stamp:
        return Stamp(self.wall, self.synced, self.mono)

    def read(self, sensor: str, quantity: Quantity, value: float) -> None:
        self.engine.on_reading(Reading(sensor, quantity, value, self.stamp()))

    def advance(self, seconds: float) -> None:
        """Move both clocks forward, ticking on the way (ticks land on multiples of tick_s)."""
        end = self.mono + seconds
        while self._next_tick <= end:
            step = self._next_tick - self.mono
            self.mono += step
            self.wall += step
            self.engine.tick(self.stamp())
            self._next_tick += self.tick_s
        self.wall += end - self.mono
        self.mono = end

    def series(
        self, sensor: str, quantity: Quantity, values: Iterable[float], every_s: float
    ) -> None:
        """Report each value, then let `every_s` pass."""
        for value in values:
            self.read(sensor, quantity, value)
            self.advance(every_s)

    def hold(
        self, sensor: str, quantity: Quantity, value: float, seconds: float, every_s: float = 300
    ) -> None:
        """Report `value` every `every_s` for `seconds`."""
        self.series(sensor, quantity, [value] * int(seconds // every_s), every_s)

    def restart(self, *, reboot: bool = True) -> Harness:
        """A new engine on the same store, as after a service restart; with `reboot` the
        monotonic clock starts again from zero, as after a power cut."""
        self.engine.save_state()
        again = Harness(
            self.config,
            start=self.wall,
            store=self.store,
            tick_s=self.tick_s,
            mono=0.0 if reboot else self.mono,
            synced=self.synced,
        )
        return again

    def of(
        self, check: str, state: AlertState | None = None, sensor: str | None = None
    ) -> list[Alert]:
        return [
            a
            for a in self.alerts
            if a.check == check
            and (state is None or a.state is state)
            and (sensor is None or a.sensor_id == sensor)
        ]

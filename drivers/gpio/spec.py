"""What one wired sensor is: its pin, its resistor, which electrical level means "active".

Kept free of gpiozero so the hub and the CLI can read and describe GPIO wiring on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hub.config import GPIO_KINDS, SensorConfig, SensorKind, SensorSource
from hub.events import Quantity

QUANTITY_OF_KIND: Mapping[SensorKind, Quantity] = {
    SensorKind.MOTION: Quantity.MOTION,
    SensorKind.CONTACT: Quantity.CONTACT,
    SensorKind.BUTTON: Quantity.BUTTON,
    SensorKind.PRESSURE_MAT: Quantity.OCCUPANCY,
    SensorKind.LEAK: Quantity.LEAK,
}


def default_active_high(kind: SensorKind, pull_up: bool) -> bool:
    """The level that means "active" (motion, open, pressed, occupied, wet) when the config
    leaves active_high unset, for the way each kind is usually wired.

    - motion: PIR modules (HC-SR501, AM312) drive their output high on motion, and alarm PIRs
      with a normally-closed relay to ground let a pull-up take the line high: high either way.
    - contact: a door reed switch is normally closed (closed while the magnet is beside it),
      wired to ground with a pull-up: door shut = line held low, door open = switch open, the
      pull-up takes it high. So open is the level the resistor pulls to: active_high = pull_up.
    - button, pressure_mat, leak: a normally-open switch (pull cord, mat) or wet probe that
      connects the line to the other rail when active, so active is the opposite of the pull.
    """
    if kind is SensorKind.MOTION:
        return True
    if kind is SensorKind.CONTACT:
        return pull_up
    return not pull_up


@dataclass(frozen=True, slots=True)
class GpioSpec:
    """One GPIO sensor, fully resolved: no "let the driver decide" left in it."""

    sensor_id: str
    kind: SensorKind
    pin: int  # BCM numbering
    pull_up: bool  # internal pull-up (True) or pull-down (False)
    active_high: bool  # True: a high line means active (1); False: a low line does
    debounce_ms: int = 50  # the line must be stable this long before a change counts
    hold_s: float | None = None  # buttons: held this long before BUTTON=1; None/0: at once

    def __post_init__(self) -> None:
        if self.kind not in GPIO_KINDS:
            raise ValueError(f"{self.sensor_id}: a {self.kind} sensor cannot be wired to GPIO")
        if self.debounce_ms < 0:
            raise ValueError(f"{self.sensor_id}: debounce_ms must not be negative")
        if self.hold_s is not None:
            if self.kind is not SensorKind.BUTTON:
                raise ValueError(f"{self.sensor_id}: hold_s only applies to buttons")
            if self.hold_s < 0:
                raise ValueError(f"{self.sensor_id}: hold_s must not be negative")

    @classmethod
    def from_config(cls, sensor: SensorConfig) -> GpioSpec:
        if sensor.source is not SensorSource.GPIO or sensor.pin is None:
            raise ValueError(f"{sensor.id}: not a GPIO sensor (source is '{sensor.source}')")
        active_high = sensor.active_high
        if active_high is None:
            active_high = default_active_high(sensor.kind, sensor.pull_up)
        return cls(
            sensor_id=sensor.id,
            kind=sensor.kind,
            pin=sensor.pin,
            pull_up=sensor.pull_up,
            active_high=active_high,
            debounce_ms=sensor.debounce_ms,
            hold_s=sensor.hold_s,
        )

    @property
    def quantity(self) -> Quantity:
        return QUANTITY_OF_KIND[self.kind]

    @property
    def debounce_s(self) -> float | None:
        """For gpiozero's bounce_time: None turns debouncing off."""
        return self.debounce_ms / 1000 if self.debounce_ms else None

    @property
    def hold_time_s(self) -> float:
        """0 when a button counts as pressed at once."""
        return self.hold_s or 0.0

    def describe(self) -> str:
        """One line for the log and the installer: how the sensor is read."""
        pull = "up" if self.pull_up else "down"
        level = "high" if self.active_high else "low"
        text = (
            f"{self.sensor_id}: {self.kind} on GPIO {self.pin}, pull-{pull}, active {level},"
            f" debounce {self.debounce_ms} ms"
        )
        if self.hold_time_s:
            text += f", hold {self.hold_time_s:g} s"
        return text

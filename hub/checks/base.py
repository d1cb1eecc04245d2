"""What a check is, what it is given, and the registry the engine builds itself from.

A check is registered with `@register` in any module of the hub.checks package; the engine
imports every module of the package (`registered_checks`), so a new module needs no other
wiring. See the package docstring for the contract.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hub.checks.health import DeviceHealth
from hub.checks.lifecycle import AlertChannel, AlertSink, Condition
from hub.checks.timeline import LocalClock, Timeline
from hub.config import ChecksSection, HubConfig, SensorConfig
from hub.events import Quantity, Reading, Stamp

HOLD_FLOOR_S = 1800.0  # a reported value is believed for at least this long


def hold_seconds(config: HubConfig) -> float:
    """How long a reported value is believed without news: sensors report on change and on a
    heartbeat (config.report.heartbeat_min), so two missed heartbeats, and at least 30 min."""
    return max(HOLD_FLOOR_S, 2.0 * config.report.heartbeat_min * 60.0)


def setting(section: object, name: str, default: float) -> float:
    """A threshold from a config section, or `default` where the config has no such key yet.
    (Only for keys proposed for hub.config and not yet there; see the package docstring.)"""
    value = getattr(section, name, default)
    return float(value)


@dataclass(frozen=True)
class CheckContext:
    """Everything a check may use, shared by all checks of one engine."""

    config: HubConfig
    sensors: Mapping[str, SensorConfig]
    timeline: Timeline
    local: LocalClock
    health: DeviceHealth
    sink: AlertSink
    hold_s: float

    @property
    def checks(self) -> ChecksSection:
        """The home's settings; per-sensor thresholds come from `checks_for`."""
        return self.config.checks

    def checks_for(self, sensor: SensorConfig) -> ChecksSection:
        """The settings for `sensor`: the home's with its room's overrides ([checks.rooms])."""
        return self.config.checks_for_room(sensor.room)


class Check:
    """One anomaly check. Subclasses set `name` and `quantities` and override the hooks.

    Times given to the hooks are on the engine's Timeline (seconds, monotonic-based: use them
    for every duration); the stamp's wall time is for the time of day (ctx.local).
    """

    name: ClassVar[str]  # the alerts' `check` field and the key of its saved state
    quantities: ClassVar[frozenset[Quantity]] = frozenset()  # readings it is sent
    capped: ClassVar[bool] = True  # False: exempt from checks.daily_cap (immediate safety)
    order: ClassVar[int] = 100  # lower runs first for a reading (safety alarms: 0)
    state_version: ClassVar[int] = 1  # bump when state() changes shape: old state is dropped

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.alerts = AlertChannel(ctx.sink, self.name, self.capped)

    def wants(self, sensor: SensorConfig, quantity: Quantity) -> bool:
        """Whether readings of `quantity` from `sensor` are for this check (decided once)."""
        return True

    def on_reading(self, reading: Reading, sensor: SensorConfig, t: float) -> None:
        """A reading this check wants, at timeline time `t`. Must be O(1) amortised."""

    def on_tick(self, stamp: Stamp, t: float) -> None:
        """Time passed (about once a minute): raise or clear what depends on time alone."""

    def state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-ready data."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Carry on from `state()` of an earlier run (same state_version)."""

    def conditions(self) -> Iterator[Condition]:
        """Its conditions, pending or raised (for status and tests)."""
        return iter(())


C = TypeVar("C", bound=type[Check])

ALL_CHECKS: list[type[Check]] = []


def register(cls: C) -> C:
    """Class decorator: add a check to ALL_CHECKS (names must be unique)."""
    for index, known in enumerate(ALL_CHECKS):
        if known.name == cls.name:
            if (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(f"two checks are named {cls.name!r}: {known} and {cls}")
            ALL_CHECKS[index] = cls  # the same class re-imported (a reload)
            return cls
    ALL_CHECKS.append(cls)
    return cls


def registered_checks() -> list[type[Check]]:
    """Every check of the package: imports each hub.checks module (so its @register runs)
    and returns ALL_CHECKS by `order`, then registration order."""
    package = importlib.import_module("hub.checks")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"hub.checks.{module.name}")
    return sorted(ALL_CHECKS, key=lambda check: check.order)

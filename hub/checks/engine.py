"""The check engine: readings and ticks in, alerts out, state saved in the store.

Per reading the work is a dict lookup for the sensor, one for the quantity, and the checks
that asked for that pair (decided once, at construction); nothing else is scanned. Ticks
(about once a minute on the hub's clock) let checks act on time alone: a cold room that
stays cold, a sensor that stopped talking.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.checks.base import Check, CheckContext, hold_seconds, registered_checks
from hub.checks.health import DeviceHealth, SensorHealth
from hub.checks.lifecycle import AlertSink, AlertStats, Condition
from hub.checks.timeline import LocalClock, Timeline
from hub.clock import Clock
from hub.config import HubConfig, SensorConfig
from hub.events import Alert, AlertState, Quantity, Reading, Severity, Stamp

log = logging.getLogger(__name__)

ENGINE_KEY = "_engine"  # the engine's own saved state (timeline, daily cap counts, health)
ENGINE_STATE_VERSION = 1
TICK_S = 60.0
SAVE_EVERY_S = 600.0  # periodic save of the checks' state (learned routines, windows)


class CheckStateStore(Protocol):
    """Where check state lives between runs; hub.store.Store implements it."""

    def load_check_state(self) -> dict[str, str]: ...

    def save_check_state(self, states: Mapping[str, str], saved_at: float) -> None: ...

    def open_alerts(self) -> list[dict[str, Any]]: ...


class MemoryStateStore:
    """A CheckStateStore in memory: for tests and throwaway replays."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.saves = 0

    def load_check_state(self) -> dict[str, str]:
        return dict(self.states)

    def save_check_state(self, states: Mapping[str, str], saved_at: float) -> None:
        self.states.update(states)
        self.saves += 1

    def open_alerts(self) -> list[dict[str, Any]]:
        return []  # alerts are not kept here: nothing can be orphaned


@dataclass
class EngineStats:
    readings: int = 0  # readings from configured sensors
    unknown_sensor: int = 0  # readings from sensors not in the config: ignored
    not_finite: int = 0  # NaN or infinite values: ignored
    check_errors: int = 0  # a check raised: logged, the others carried on
    ticks: int = 0
    saves: int = 0
    save_errors: int = 0
    restored: list[str] = field(default_factory=list)  # checks that carried on from the store
    restore_errors: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # checks whose constructor failed


class _Route:
    """What happens to a reading from one sensor: its health record and, per quantity, the
    checks that want it."""

    __slots__ = ("by_quantity", "health", "sensor")

    def __init__(self, sensor: SensorConfig, health: SensorHealth) -> None:
        self.sensor = sensor
        self.health = health
        self.by_quantity: dict[Quantity, tuple[Check, ...]] = {}


class CheckEngine:
    """Runs every check over the readings and the passing of time; see the package docs."""

    def __init__(
        self,
        config: HubConfig,
        clock: Clock,
        on_alert: Callable[[Alert], None],
        state_store: CheckStateStore | None = None,
        *,
        checks: Sequence[type[Check]] | None = None,
        tick_s: float = TICK_S,
        save_every_s: float = SAVE_EVERY_S,
    ) -> None:
        self.config = config
        self.clock = clock
        self.state_store = state_store
        self.tick_s = tick_s
        self.save_every_s = save_every_s
        self.stats = EngineStats()
        self.timeline = Timeline()
        self.local = LocalClock(config.hub.timezone)
        sensors = {sensor.id: sensor for sensor in config.sensors}
        self.health = DeviceHealth(
            config.sensors,
            self.timeline,
            missed_intervals=config.checks.sensor_silent.missed_intervals,
        )
        self._on_alert = on_alert
        self.sink = AlertSink(on_alert, self.local, config.checks.daily_cap)
        self.context = CheckContext(
            config=config,
            sensors=sensors,
            timeline=self.timeline,
            local=self.local,
            health=self.health,
            sink=self.sink,
            hold_s=hold_seconds(config),
        )
        classes = registered_checks() if checks is None else sorted(checks, key=lambda c: c.order)
        self.checks: list[Check] = []
        for cls in classes:
            try:
                self.checks.append(cls(self.context))
            except Exception:  # one broken check must not keep the others (or the hub) down
                self.stats.check_errors += 1
                self.stats.not_started.append(cls.name)
                log.exception("check %s could not start; running without it", cls.name)
        self._routes: dict[str, _Route] = {}
        for sensor in config.sensors:
            health = self.health.record(sensor.id)
            assert health is not None
            route = _Route(sensor, health)
            for quantity in Quantity:
                wanting = tuple(
                    check
                    for check in self.checks
                    if quantity in check.quantities and check.wants(sensor, quantity)
                )
                if wanting:
                    route.by_quantity[quantity] = wanting
            self._routes[sensor.id] = route
        self._next_save_t: float | None = None
        if state_store is not None:
            self._restore(state_store)
            self._clear_orphaned_alerts(state_store)

    def _clear_orphaned_alerts(self, store: CheckStateStore) -> None:
        """An alert left open by a check that starts without its saved state (an upgrade, a
        damaged state) would stay open for ever: nothing remembers it to clear it. Clear it
        now, saying why, so the carer and the council see where it went."""
        restored = set(self.stats.restored)
        stamp = self.clock.stamp()
        try:
            rows = store.open_alerts()
        except Exception:
            log.exception("could not read the open alerts; any orphaned ones stay open")
            return
        for row in rows:
            if row["check"] in restored:
                continue
            evidence = {"reason": "the check restarted without its saved state"}
            self._on_alert(
                Alert(
                    check=row["check"],
                    severity=Severity(row["severity"]),
                    state=AlertState.CLEARED,
                    room=row["room"],
                    sensor_id=row["sensor_id"],
                    start=row["since"],
                    end=stamp.wall_time,
                    evidence=evidence,
                    stamp=stamp,
                )
            )

    # -- input ---------------------------------------------------------------------------

    def on_reading(self, reading: Reading) -> None:
        """Feed one reading to the checks that want it; alerts (a pull cord above all) are
        delivered to on_alert before this returns. Never raises."""
        route = self._routes.get(reading.sensor_id)
        if route is None:
            self.stats.unknown_sensor += 1
            return
        value = reading.value
        if value - value != 0.0:  # NaN or infinite (cheaper than math.isfinite)
            self.stats.not_finite += 1
            return
        self.stats.readings += 1
        t = self.timeline.at(reading.stamp)
        self.health.heard(route.health, t, reading)
        checks = route.by_quantity.get(reading.quantity)
        if checks is None:
            return
        sensor = route.sensor
        for check in checks:
            try:
                check.on_reading(reading, sensor, t)
            except Exception:
                self.stats.check_errors += 1
                log.exception("check %s failed on a reading from %s", check.name, sensor.id)
        if self.sink.dirty:
            # The alert is committed; its condition's state goes right after it, so a crash
            # between the two cannot restore a state that raises the same alert again.
            self.save_state()

    def tick(self, stamp: Stamp | None = None) -> None:
        """Let time act: checks raise or clear what depends on time alone."""
        stamp = stamp if stamp is not None else self.clock.stamp()
        t = self.timeline.at(stamp)
        if t < self.timeline.t:
            return  # a stamp older than what the checks have already seen
        self.stats.ticks += 1
        self.health.tick(t)
        for check in self.checks:
            try:
                check.on_tick(stamp, t)
            except Exception:
                self.stats.check_errors += 1
                log.exception("check %s failed on a tick", check.name)

    async def run_ticks(self, beat: Callable[[], object] | None = None) -> None:
        """Tick every `tick_s` of the hub's clock until cancelled; save the checks' state when
        an alert went out and every `save_every_s`, and once more when cancelled. `beat`, the
        service watchdog's heartbeat, is called after every tick."""
        try:
            while True:
                await self.clock.sleep(self.tick_s)
                if beat is not None:
                    beat()
                try:
                    self.tick(self.clock.stamp())
                    if self.sink.dirty or self._save_due():
                        self.save_state()
                except Exception:  # time-based checks must outlive any one failure
                    self.stats.check_errors += 1
                    log.exception("a tick of the checks failed; ticking on")
        finally:
            if self.state_store is not None:
                self.save_state()

    def _save_due(self) -> bool:
        if self.state_store is None:
            return False
        t = self.timeline.t
        if self._next_save_t is None:
            self._next_save_t = t + self.save_every_s
        return t >= self._next_save_t

    # -- queries -------------------------------------------------------------------------

    def silent_sensors(self) -> frozenset[str]:
        """Sensors judged silent now (see health.py): not heard for several usual gaps."""
        return self.health.silent_sensors()

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def open_conditions(self) -> list[tuple[str, Condition]]:
        """Every pending or raised condition, by check name."""
        return [(check.name, cond) for check in self.checks for cond in check.conditions()]

    @property
    def alert_stats(self) -> AlertStats:
        return self.sink.stats

    # -- persistence ---------------------------------------------------------------------

    def save_state(self) -> None:
        """Write every check's state to the store in one transaction. A failure is logged
        and counted; the next save tries again (the checks keep running meanwhile)."""
        store = self.state_store
        if store is None:
            return
        try:
            states = {
                check.name: _dump(check.state_version, check.state()) for check in self.checks
            }
            states[ENGINE_KEY] = _dump(
                ENGINE_STATE_VERSION,
                {
                    "timeline": self.timeline.state(),
                    "sink": self.sink.state(),
                    "health": self.health.state(),
                },
            )
            last = self.timeline.last_stamp
            store.save_check_state(states, last.wall_time if last else self.clock.wall())
        except Exception:
            self.stats.save_errors += 1
            log.exception("saving the checks' state failed; will try again")
            return
        self.stats.saves += 1
        self.sink.dirty = False
        self._next_save_t = self.timeline.t + self.save_every_s

    def _restore(self, store: CheckStateStore) -> None:
        try:
            saved = store.load_check_state()
        except Exception:
            log.exception("could not read the checks' saved state; starting afresh")
            self.stats.restore_errors.append("*")
            return
        engine = _load(saved.get(ENGINE_KEY), ENGINE_STATE_VERSION, ENGINE_KEY)
        if engine is None and saved:
            # Check states hold times on the saved timeline; without it they would be read on
            # a new one (a false "quiet for 10 days"). Better to start every check afresh.
            log.warning(
                "the engine's saved timeline is missing or of another version;"
                " every check starts afresh"
            )
            self.stats.restore_errors.append(ENGINE_KEY)
            return
        if engine is not None:
            parts: list[tuple[str, Callable[[Any], None]]] = [
                ("timeline", self.timeline.restore),
                ("sink", self.sink.restore),
                ("health", self.health.restore),
            ]
            for part, restore in parts:
                try:
                    restore(engine[part])
                except Exception:
                    log.exception("the engine's saved %s is unreadable; it starts afresh", part)
                    self.stats.restore_errors.append(f"{ENGINE_KEY}.{part}")
                    if part == "timeline":
                        return  # see above: check states must not outlive their timeline
        for check in self.checks:
            state = _load(saved.get(check.name), check.state_version, check.name)
            if state is None:
                continue
            try:
                check.restore(state)
            except Exception:
                log.exception("check %s: saved state unreadable; it starts afresh", check.name)
                self.stats.restore_errors.append(check.name)
                continue
            self.stats.restored.append(check.name)


def _dump(version: int, state: Mapping[str, Any]) -> str:
    return json.dumps({"v": version, "state": state}, separators=(",", ":"))


def _load(text: str | None, version: int, name: str) -> Mapping[str, Any] | None:
    if text is None:
        return None
    try:
        blob = json.loads(text)
    except ValueError:
        log.warning("check %s: saved state is not JSON; it starts afresh", name)
        return None
    if not isinstance(blob, dict) or blob.get("v") != version:
        log.info("check %s: saved state is of another version; it starts afresh", name)
        return None
    state = blob.get("state")
    return state if isinstance(state, dict) else None

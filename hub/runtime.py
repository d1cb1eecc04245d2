"""The hub service: wires config, clock, drivers and the buffer, and runs until stopped.

Drivers are imported only when a configured sensor needs them, so the hub (and anything that
imports it) starts without hardware libraries installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.base import Emit, ReadingSource
from hub import __version__
from hub.checks import CheckEngine
from hub.clock import Clock
from hub.config import HubConfig, PinFactoryChoice, SensorSource
from hub.events import Alert, Reading, SystemEvent, SystemKind
from hub.store import GroupCommitter, Store, StoreLimits

log = logging.getLogger(__name__)

DRIVER_RETRY_FIRST_S = 1.0
DRIVER_RETRY_MAX_S = 300.0


@dataclass
class RunSummary:
    readings: int
    alerts: int
    committed: int
    last_seq: int


def build_sources(config: HubConfig, clock: Clock) -> list[ReadingSource]:
    """One source per driver that has sensors configured. Driver packages are imported here,
    only when needed, so a hub without BLE sensors never loads bleak."""
    sources: list[ReadingSource] = []
    by_source = {kind: [s for s in config.sensors if s.source is kind] for kind in SensorSource}
    if simulated := by_source[SensorSource.SIMULATED]:
        from drivers.simulated import SimSensor, SimulatedHome

        sims = [SimSensor(s.id, s.kind.value, s.role.value) for s in simulated]
        sources.append(SimulatedHome(sims, clock, config.hub.timezone))
    if gpio := by_source[SensorSource.GPIO]:
        from drivers.gpio import GpioSource, GpioSpec

        choice = config.gpio.pin_factory
        mock = None if choice is PinFactoryChoice.AUTO else choice is PinFactoryChoice.MOCK
        sources.append(GpioSource([GpioSpec.from_config(s) for s in gpio], clock, mock=mock))
    if by_source[SensorSource.BLE]:
        from drivers.ble.scanner import BleSource

        sources.append(BleSource.from_config(config, clock))
    return sources


def store_limits(config: HubConfig) -> StoreLimits:
    return StoreLimits(
        quota_bytes=int(config.store.quota_mb * 1024 * 1024),
        retention_days=config.store.retention_days,
    )


class Hub:
    def __init__(
        self,
        config: HubConfig,
        clock: Clock,
        sources: Sequence[ReadingSource] | None = None,
        *,
        stop_when_sources_end: bool = False,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sources = list(sources) if sources is not None else build_sources(config, clock)
        self.stop_when_sources_end = stop_when_sources_end  # a replay: stop when data ends
        self.on_alert = on_alert  # besides the buffer: `hearth replay` prints each alert
        self.readings = 0
        self.alerts = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _emit_to(self, committer: GroupCommitter, engine: CheckEngine) -> Emit:
        def emit(reading: Reading) -> None:
            self.readings += 1
            committer.add(reading)
            engine.on_reading(reading)  # pull cord and leak alerts are raised in this call

        return emit

    def _alert_to(self, committer: GroupCommitter) -> Callable[[Alert], None]:
        def deliver(alert: Alert) -> None:
            self.alerts += 1
            committer.add(alert)  # committed before this returns
            if self.on_alert is not None:
                self.on_alert(alert)

        return deliver

    async def run(self, duration_s: float | None = None) -> RunSummary:
        """Run until `stop()`, SIGTERM/SIGINT, or `duration_s` of the hub's clock."""
        store = Store.open(
            self.config.store_path, limits=store_limits(self.config), clock=self.clock
        )
        committer = GroupCommitter(store, max_latency_s=self.config.store.commit_interval_s)
        committer.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            started = {"version": __version__, "sensors": len(self.config.sensors)}
            committer.add(SystemEvent(SystemKind.HUB_STARTED, started, self.clock.stamp()))
            engine = CheckEngine(self.config, self.clock, self._alert_to(committer), store)
            emit = self._emit_to(committer, engine)
            sources = [
                asyncio.create_task(self._supervise(src, emit, committer), name=src.name)
                for src in self.sources
            ]
            tasks = [
                *sources,
                asyncio.create_task(self._watch_sources(sources), name="watch"),
                asyncio.create_task(engine.run_ticks(), name="checks"),
            ]
            if duration_s is not None:
                tasks.append(asyncio.create_task(self._stop_after(duration_s), name="timer"))
            log.info("hub running: %d sources, buffer %s", len(self.sources), store.path)
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            committer.close()
            last_seq = store.last_seq
            store.close()
        return RunSummary(self.readings, self.alerts, committer.stats.events, last_seq)

    async def _supervise(self, src: ReadingSource, emit: Emit, committer: GroupCommitter) -> None:
        """Run a driver; if it fails (or, in a live hub, ends) record it and restart it with
        backoff. A dead GPIO driver would otherwise leave a pull cord unread, silently."""
        delay = DRIVER_RETRY_FIRST_S
        while True:
            try:
                await src.run(emit)
                if self.stop_when_sources_end:
                    log.info("driver %s finished", src.name)
                    return
                problem = "the driver returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.error("driver %s stopped (%s); restarting in %.0f s", src.name, problem, delay)
            details = {"driver": src.name, "problem": problem, "retry_in_s": delay}
            committer.add(SystemEvent(SystemKind.DRIVER_FAILED, details, self.clock.stamp()))
            await asyncio.sleep(delay)  # real seconds: hardware recovers in real time
            delay = min(delay * 2, DRIVER_RETRY_MAX_S)

    async def _watch_sources(self, sources: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*sources, return_exceptions=True)
        if self.stop_when_sources_end:
            self.stop()

    async def _stop_after(self, duration_s: float) -> None:
        await self.clock.sleep(duration_s)
        self.stop()

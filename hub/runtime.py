"""The hub service: wires config, clock, drivers and the buffer, and runs until stopped.

Drivers are imported only when a configured sensor needs them, so the hub (and anything that
imports it) starts without hardware libraries installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Emit, ReadingSource
from hub import __version__
from hub.clock import Clock
from hub.config import HubConfig
from hub.events import Reading, SystemEvent, SystemKind
from hub.store import GroupCommitter, Store, StoreLimits

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    readings: int
    committed: int
    last_seq: int


def build_sources(config: HubConfig, clock: Clock) -> list[ReadingSource]:
    """One source per driver that has sensors configured; sensors whose driver is not in this
    version are reported, not fatal, so a hub keeps running what it can."""
    from drivers.simulated import SimSensor, SimulatedHome

    simulated = [
        SimSensor(s.id, s.kind.value, s.role.value)
        for s in config.sensors
        if s.source.value == "simulated"
    ]
    sources: list[ReadingSource] = []
    if simulated:
        sources.append(SimulatedHome(simulated, clock, config.hub.timezone))
    for sensor in config.sensors:
        if sensor.source.value != "simulated":
            log.warning(
                "sensor %s: no %s driver in this version; it will not be read",
                sensor.id,
                sensor.source.value,
            )
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
    ) -> None:
        self.config = config
        self.clock = clock
        self.sources = list(sources) if sources is not None else build_sources(config, clock)
        self.readings = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _emit_to(self, committer: GroupCommitter) -> Emit:
        def emit(reading: Reading) -> None:
            self.readings += 1
            committer.add(reading)

        return emit

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
            emit = self._emit_to(committer)
            tasks = [asyncio.create_task(src.run(emit), name=src.name) for src in self.sources]
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
        return RunSummary(self.readings, committer.stats.events, last_seq)

    async def _stop_after(self, duration_s: float) -> None:
        await self.clock.sleep(duration_s)
        self.stop()

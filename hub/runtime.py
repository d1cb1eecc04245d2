"""The hub service: wires config, clock, drivers and the buffer, and runs until stopped.

Drivers are imported only when a configured sensor needs them, so the hub (and anything that
imports it) starts without hardware libraries installed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from drivers.base import Emit, ReadingSource
from hub import __version__
from hub.checks import CheckEngine
from hub.clock import Clock
from hub.clockwatch import watch_clock
from hub.config import HubConfig, PinFactoryChoice, SensorSource
from hub.events import Alert, Reading, SystemEvent, SystemKind
from hub.sensor_health import SensorHealth
from hub.service import Beat, Heartbeats, Notifier, Watchdog
from hub.store import GroupCommitter, Store, StoreLimits
from hub.store.diskfull import RESERVE_BYTES

if TYPE_CHECKING:
    import httpx

    from sync.protocol import HubConfig as CouncilConfig
    from sync.uploader import Uploader

log = logging.getLogger(__name__)

DRIVER_RETRY_FIRST_S = 1.0
DRIVER_RETRY_MAX_S = 300.0
# How long each watched part may go without a beat before the service watchdog stops
# pinging systemd (which then restarts the hub); see hub.service.
STORE_MAX_SILENCE_S = 300.0  # a commit plus pruning on a slow SD card
STORE_BEAT_EVERY_S = 15.0  # an idle flusher still beats this often
CHECKS_MAX_SILENCE_S = 180.0  # three 60 s ticks
# A deferred enrollment (`hearth setup` with no signal) is tried again at these intervals,
# jittered, in real time: the network comes back in real time.
ENROLL_RETRY_FIRST_S = 30.0
ENROLL_RETRY_MAX_S = 3600.0


@runtime_checkable
class BeatingSource(Protocol):
    """A driver with a loop of its own that beats the service watchdog (the BLE scanner):
    its allowance comes from its own timeouts, so only it can say how long is too long."""

    beat: Callable[..., object] | None

    @property
    def max_silence_s(self) -> float: ...


@dataclass
class RunSummary:
    readings: int
    alerts: int
    committed: int
    last_seq: int
    uploaded: int | None = None  # events the council acknowledged; None: not uploading


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
        reserve_bytes=RESERVE_BYTES,  # kept free for a full disk (hub.store.diskfull)
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
        config_path: Path | None = None,
        upload: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sources = list(sources) if sources is not None else build_sources(config, clock)
        self.stop_when_sources_end = stop_when_sources_end  # a replay: stop when data ends
        self.on_alert = on_alert  # besides the buffer: `hearth replay` prints each alert
        # Where a config pushed by the council is saved (None: not saved, e.g. a replay).
        self.config_path = config_path
        self.upload = upload  # False: never contact the council (replays, tests)
        self.uploader: Uploader | None = None
        self._http: httpx.AsyncClient | None = None
        self.sensor_health = SensorHealth(config.sensors)
        # systemd's notify socket: only `hearth run` under the service has one.
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.heartbeats = Heartbeats()
        self.readings = 0
        self.alerts = 0
        self.non_finite = 0  # readings dropped as NaN or infinite
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _emit_to(self, committer: GroupCommitter, engine: CheckEngine) -> Emit:
        def emit(reading: Reading) -> None:
            self.readings += 1
            if not math.isfinite(reading.value):
                # A driver's bug, not a measurement: it would be refused upstream for ever.
                self.non_finite += 1
                if self.non_finite in (1, 10, 100, 1000):
                    log.warning(
                        "dropped %d non-finite readings (latest from %s)",
                        self.non_finite,
                        reading.sensor_id,
                    )
                return
            committer.add(reading)
            self.sensor_health.on_reading(reading)
            engine.on_reading(reading)  # pull cord and leak alerts are raised in this call

        return emit

    def _alert_to(self, committer: GroupCommitter) -> Callable[[Alert], None]:
        def deliver(alert: Alert) -> None:
            self.alerts += 1
            committer.add(alert)  # committed before this returns
            if self.uploader is not None:
                self.uploader.wake()  # an alert does not wait for the next sync interval
            if self.on_alert is not None:
                self.on_alert(alert)

        return deliver

    async def run(self, duration_s: float | None = None) -> RunSummary:
        """Run until `stop()`, SIGTERM/SIGINT, or `duration_s` of the hub's clock."""
        store = Store.open(
            self.config.store_path, limits=store_limits(self.config), clock=self.clock
        )
        committer = GroupCommitter(
            store,
            max_latency_s=self.config.store.commit_interval_s,
            beat=self.heartbeats.register("store", STORE_MAX_SILENCE_S),
            beat_every_s=STORE_BEAT_EVERY_S,
        )
        committer.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            started = {"version": __version__, "sensors": len(self.config.sensors)}
            committer.add(SystemEvent(SystemKind.HUB_STARTED, started, self.clock.stamp()))
            engine = CheckEngine(self.config, self.clock, self._alert_to(committer), store)
            emit = self._emit_to(committer, engine)
            for src in self.sources:
                if isinstance(src, BeatingSource):
                    src.beat = self.heartbeats.register(src.name, src.max_silence_s)
            sources = [
                asyncio.create_task(self._supervise(src, emit, committer), name=src.name)
                for src in self.sources
            ]
            tasks = [
                *sources,
                asyncio.create_task(self._watch_sources(sources), name="watch"),
                asyncio.create_task(
                    engine.run_ticks(self.heartbeats.register("checks", CHECKS_MAX_SILENCE_S)),
                    name="checks",
                ),
                # Corrects stamps made before NTP synchronised, uploading or not.
                asyncio.create_task(watch_clock(store), name="clock"),
            ]
            if duration_s is not None:
                tasks.append(asyncio.create_task(self._stop_after(duration_s), name="timer"))
            self._http = self._start_uploader(store, tasks)
            if self._http is None and self._enrollment_deferred():
                tasks.append(
                    asyncio.create_task(self._finish_enrollment(store, tasks), name="enroll")
                )
            watchdog = Watchdog(self.notifier, self.heartbeats)
            if not self.stop_when_sources_end:  # a replay is not a service
                tasks.append(asyncio.create_task(watchdog.run(), name="watchdog"))
            watchdog.healthy_status = f"running: {len(self.sources)} sources" + (
                "" if self.uploader is not None else ", not uploading"
            )
            self.notifier.ready(watchdog.healthy_status)
            log.info("hub running: %d sources, buffer %s", len(self.sources), store.path)
            await self._stop.wait()
            self.notifier.stopping("stopping: committing what is queued")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._http is not None:
                await self._http.aclose()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            committer.close()
            last_seq = store.last_seq
            store.close()
        uploaded = self.uploader.status().events_sent if self.uploader is not None else None
        return RunSummary(self.readings, self.alerts, committer.stats.events, last_seq, uploaded)

    def _start_uploader(
        self, store: Store, tasks: list[asyncio.Task[None]]
    ) -> httpx.AsyncClient | None:
        """Start uploading when the hub is enrolled; returns the HTTP client to close at the
        end. Any problem here is logged and the hub runs on offline: the buffer keeps
        everything until an upload succeeds, so nothing is lost by not uploading today."""
        if not self.upload or not self.config.hub.id or not self.config.council.url:
            log.info("not enrolled with a council: buffering only")
            return None
        from hub.identity import HubIdentity, KeyFileError
        from sync.client import make_http_client
        from sync.health import HealthReporter
        from sync.uploader import Uploader, UploadSettings

        try:
            identity = HubIdentity.load(self.config.hub.data_dir)
            settings = UploadSettings.from_config(self.config)
            http = make_http_client(ca_bundle=settings.ca_bundle, timeout_s=settings.timeout_s)
        except (KeyFileError, OSError, ValueError) as exc:
            log.error("not uploading to the council: %s", exc)
            return None

        def sensors() -> dict[str, dict[str, object]]:
            return self.sensor_health.report(store.open_alerts())

        def config_changed(version: int) -> None:
            tasks.append(asyncio.create_task(self._apply_council_config(), name="council-config"))

        # The uploader keeps the real clock even under --speed: network time is real time.
        self.uploader = Uploader(
            store,
            identity,
            self.config.hub.id,
            settings,
            http,
            health=HealthReporter(
                self.config.hub.data_dir, sensors=sensors, storage=store.storage_report
            ),
            config_version=self.config.council.config_version,
            on_config_version=config_changed,
            beat=Beat(self.heartbeats, "uploader"),  # a no-op until registered below
        )
        self.heartbeats.register("uploader", self.uploader.round_allowance_s)
        tasks.append(asyncio.create_task(self.uploader.run(), name="uploader"))
        return http

    def _enrollment_deferred(self) -> bool:
        from sync.deferred import deferred_path

        return (
            self.upload
            and self.config_path is not None
            and self.config.hub.id is None
            and deferred_path(self.config.hub.data_dir).exists()
        )

    async def _finish_enrollment(self, store: Store, tasks: list[asyncio.Task[None]]) -> None:
        """Complete the enrollment the installer left deferred, retrying with backoff until
        the council answers; then upload from this run on (no restart needed). A definite
        refusal (the code was used, expired or revoked) is logged once: a new code is needed."""
        from hub.config import load_config
        from sync.deferred import finish_deferred_enrollment
        from sync.enroll import EnrollError

        assert self.config_path is not None
        delay = ENROLL_RETRY_FIRST_S
        while True:
            try:
                hub_id = await asyncio.to_thread(finish_deferred_enrollment, self.config_path)
            except EnrollError as exc:
                log.error(
                    "the deferred enrollment was refused: %s; enroll with a new code:"
                    " hearth enroll --council URL --code CODE",
                    exc,
                )
                return
            except Exception as exc:  # a config or disk problem: try again later
                log.warning("could not finish the deferred enrollment: %s", exc)
                hub_id = None
            if hub_id is not None:
                self.config = await asyncio.to_thread(load_config, self.config_path)
                log.info("enrolled as %s: uploading from now on", hub_id)
                self._http = self._start_uploader(store, tasks)
                return
            await asyncio.sleep(random.uniform(0.5, 1.0) * delay)
            delay = min(delay * 2, ENROLL_RETRY_MAX_S)

    async def _apply_council_config(self) -> None:
        """Fetch the council's newer config, validate it against this hub's own rules and
        save it atomically; it takes effect at the next start. A config the hub refuses is
        logged and left: a bad push must never stop a hub."""
        from hub.config import ConfigError

        uploader = self.uploader
        if uploader is None:
            return
        try:
            pushed = await uploader.fetch_config()
        except Exception as exc:  # the council or the network: tried again at the next start
            log.warning("could not fetch the council's config: %s", exc)
            return
        if self.config_path is not None:
            try:
                saved_to = await asyncio.to_thread(self._save_council_config, pushed)
            except ConfigError as exc:
                log.error("council config refused: %s", "; ".join(exc.problems))
            except Exception as exc:  # a full disk, say: the next push or start tries again
                log.warning(
                    "could not save council config version %d: %s", pushed.config_version, exc
                )
                return
            else:
                log.info(
                    "council config version %d saved to %s; it applies from the next start",
                    pushed.config_version,
                    saved_to,
                )
        uploader.applied_config_version = pushed.config_version  # refused ones too: no loop

    def _save_council_config(self, pushed: CouncilConfig) -> Path:
        """Merge the council's sections into the config as it is now, not as it was at start
        (an installer's edit or a re-enrollment since must not be undone), and keep them in
        the data directory: the service may not write the config file (hub.council_state)."""
        from hub.config import load_config, with_council_config
        from hub.council_state import save_council_state

        assert self.config_path is not None
        current = load_config(self.config_path)
        return save_council_state(
            with_council_config(current, pushed.config, pushed.config_version)
        )

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
            if isinstance(src, BeatingSource) and src.beat is not None:
                src.beat(within=delay + 60)  # restarting it on purpose, not stuck
            await asyncio.sleep(delay)  # real seconds: hardware recovers in real time
            delay = min(delay * 2, DRIVER_RETRY_MAX_S)

    async def _watch_sources(self, sources: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*sources, return_exceptions=True)
        if self.stop_when_sources_end:
            self.stop()

    async def _stop_after(self, duration_s: float) -> None:
        await self.clock.sleep(duration_s)
        self.stop()

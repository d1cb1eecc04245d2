"""GPIO sensors as a ReadingSource: each debounced level change becomes a Reading.

Device class: every kind (PIR, reed contact, pull cord, pressure mat, leak probe) is a gpiozero
DigitalInputDevice: one edge-driven input with a pull resistor and debounce. The alternatives
fit worse:
- MotionSensor samples the pin from a thread (10 times a second by default): up to 100 ms
  late, stamped at the sample rather than the edge, and blind to short pulses. A PIR module's
  output is already a clean on/off with its own hold-on timer, so edges suit it.
- Button's hold thread times gpiozero's idea of "pressed", which gpiozero ties to the pull
  resistor (pull-up always means active-low). A normally-closed pull cord (pulled = switch
  opens = line goes high with the pull-up) cannot be expressed, and the thread wakes ten
  times a second forever. We time holds ourselves on the event loop instead: no thread, no
  polling, and the hold starts at the debounced edge.

Active state: gpiozero derives "active" from the pull (and refuses any other active state
with a pull set); the spec's active_high may differ (a door contact is open when the pull-up
takes the line high), so each sensor keeps a flag that flips gpiozero's view when they differ.

Debounce is gpiozero's bounce_time: lgpio reports a level once it has been stable for that
long (done in C before Python sees it); the mock pins emulate the same rule (see mockpin).

Threads: gpiozero calls back on its own threads (lgpio's alert thread; whatever drives a mock
pin). A change is stamped there, at once, then handed to the event loop with
call_soon_threadsafe, so `emit` always runs on the loop, in order. Nothing polls: an edge
reaches emit after the debounce time plus one loop wake-up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from drivers.base import Emit
from drivers.gpio.factory import GpioUnavailable, PinFactory, choose_pin_factory
from drivers.gpio.spec import GpioSpec
from hub.clock import Clock
from hub.config import SensorKind
from hub.events import Reading

log = logging.getLogger(__name__)


class GpioSource:
    """All GPIO sensors of a hub. Devices are opened when run() starts and closed when it is
    cancelled; a sensor that cannot be opened is logged and recorded in `failed`, and the
    others carry on."""

    name = "gpio"

    def __init__(
        self,
        specs: Sequence[GpioSpec],
        clock: Clock,
        pin_factory: PinFactory | None = None,
        *,
        mock: bool | None = None,
    ) -> None:
        self.specs = tuple(specs)
        self.clock = clock
        self._given_factory = pin_factory
        self._mock = mock
        self.pin_factory_reason: str | None = None
        self.failed: dict[str, str] = {}  # sensor id -> why it is not being read

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        if not self.specs:
            await loop.create_future()  # nothing wired: idle until cancelled
            return
        if self._given_factory is not None:
            factory, reason, owned = self._given_factory, "given by the caller", False
        else:
            try:
                factory, reason = choose_pin_factory(self._mock)
            except GpioUnavailable as exc:
                # Logged here: the hub only collects a source's exception when it stops.
                log.error("GPIO sensors not started: %s", exc)
                raise
            owned = True
        self.failed.clear()
        self.pin_factory_reason = reason
        log.info("GPIO pins: %s (%s)", type(factory).__name__, reason)
        deliver = _guarded(emit)
        channels: list[_Channel] = []
        try:
            for spec in self.specs:
                try:
                    channels.append(_Channel.open(spec, factory, self.clock, loop, deliver))
                except Exception as exc:
                    self.failed[spec.sensor_id] = f"{type(exc).__name__}: {exc}"
                    log.error("GPIO sensor not started: %s: %s", spec.describe(), exc)
                else:
                    log.info("GPIO sensor started: %s", spec.describe())
            await loop.create_future()
        finally:
            # Readings already handed to the loop still reach emit (they are queued ahead of
            # whoever awaits this task); none are handed over after this point.
            for channel in channels:
                channel.stop()
            for channel in channels:
                channel.close()
            if owned:
                factory.close()


def _guarded(emit: Emit) -> Emit:
    def deliver(reading: Reading) -> None:
        try:
            emit(reading)
        except Exception:
            log.exception("emit failed for %s %s", reading.sensor_id, reading.quantity)

    return deliver


class _Channel:
    """One open sensor: turns gpiozero's active/inactive events into published 0/1 values.

    `_lock` orders everything per sensor: a change is compared, stamped and queued for the
    loop under it, so readings reach emit in the order they were stamped, and a button's hold
    can never be published after its release.
    """

    def __init__(
        self,
        spec: GpioSpec,
        device: Any,
        clock: Clock,
        loop: asyncio.AbstractEventLoop,
        deliver: Emit,
    ) -> None:
        self.spec = spec
        self.device = device
        self._clock = clock
        self._loop = loop
        self._deliver = deliver
        # gpiozero's "active" is the level opposite the pull; flip it when the spec differs.
        self._inverted = spec.active_high == spec.pull_up
        self._hold_s = spec.hold_time_s if spec.kind is SensorKind.BUTTON else 0.0
        self._lock = threading.Lock()
        self._last: bool | None = None  # the value last published
        self._pressed = False
        self._generation = 0  # bumped by every press and release; a hold checks it
        self._hold_timer: asyncio.TimerHandle | None = None
        self._closing = False

    @classmethod
    def open(
        cls,
        spec: GpioSpec,
        factory: PinFactory,
        clock: Clock,
        loop: asyncio.AbstractEventLoop,
        deliver: Emit,
    ) -> _Channel:
        from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]

        device = DigitalInputDevice(
            spec.pin, pull_up=spec.pull_up, bounce_time=spec.debounce_s, pin_factory=factory
        )
        try:
            channel = cls(spec, device, clock, loop, deliver)
            device.when_activated = channel._on_activated
            device.when_deactivated = channel._on_deactivated
            channel._start(bool(device.is_active) != channel._inverted)
        except BaseException:
            device.close()
            raise
        return channel

    def _start(self, active: bool) -> None:
        """The state at start, published at once: a cord already pulled (or stuck) when the
        hub starts has been held longer than any hold time."""
        with self._lock:
            self._pressed = active
            self._publish(active)

    def _on_activated(self) -> None:
        self._changed(not self._inverted)

    def _on_deactivated(self) -> None:
        self._changed(self._inverted)

    def _changed(self, active: bool) -> None:
        # Runs on gpiozero's callback thread: never let an exception escape into it.
        try:
            with self._lock:
                if not self._hold_s:
                    self._publish(active)
                    return
                self._generation += 1
                self._pressed = active
                if not active:
                    self._publish(False)
                    return
                due = self._loop.time() + self._hold_s
                self._call_on_loop(self._arm_hold, self._generation, due)
        except Exception:
            log.exception("GPIO %s: change not handled", self.spec.sensor_id)

    def _arm_hold(self, generation: int, due: float) -> None:
        with self._lock:
            if generation == self._generation and not self._closing:
                self._hold_timer = self._loop.call_at(due, self._held, generation)

    def _held(self, generation: int) -> None:
        with self._lock:
            self._hold_timer = None
            if generation == self._generation and self._pressed:
                self._publish(True)

    def _publish(self, active: bool) -> None:
        """Stamp now and queue for emit; only changes are published. Call with _lock held."""
        if self._closing or active == self._last:
            return
        self._last = active
        reading = Reading(
            self.spec.sensor_id, self.spec.quantity, 1.0 if active else 0.0, self._clock.stamp()
        )
        self._call_on_loop(self._deliver, reading)

    def _call_on_loop(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the hub is stopping
            self._closing = True

    def stop(self) -> None:
        """No reading is published after this. Call on the loop thread."""
        with self._lock:
            self._closing = True
            self._generation += 1
            if self._hold_timer is not None:
                self._hold_timer.cancel()
                self._hold_timer = None

    def close(self) -> None:
        try:
            self.device.close()
        except Exception:
            log.exception("GPIO %s: closing the device failed", self.spec.sensor_id)

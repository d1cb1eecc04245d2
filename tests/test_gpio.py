"""GPIO driver: real gpiozero devices on mock pins, driven the way wires would drive them.

The mock pins debounce like lgpio and use real time, so every wait here is on a condition
with a timeout; the short sleeps only make a stimulus (a bounce burst, a press of some
length). Absence ("no reading for a glitch") is shown by a later change arriving with nothing
before it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from drivers.gpio import (
    GpioSource,
    GpioSpec,
    GpioUnavailable,
    choose_pin_factory,
    default_active_high,
    gpio_chips,
    mock_pin_factory,
)
from drivers.gpio.mockpin import DebouncedMockPin
from hub.clock import SimulatedClock
from hub.config import SensorConfig, SensorKind
from hub.events import Quantity, Reading, Stamp

WAIT_S = 3.0  # generous: a missed condition fails after this, a met one returns at once
T0 = 1_764_316_800.0

K = SensorKind


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return sync


class Collector:
    """The emit callable: records readings and the thread each arrived on."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.threads: set[int] = set()
        self._changed = asyncio.Event()

    def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)
        self.threads.add(threading.get_ident())
        self._changed.set()

    def values(self, sensor_id: str) -> list[float]:
        return [r.value for r in self.readings if r.sensor_id == sensor_id]

    def of(self, sensor_id: str) -> list[Reading]:
        return [r for r in self.readings if r.sensor_id == sensor_id]

    async def until(self, done: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {self.readings}") from None

    async def count(self, sensor_id: str, n: int) -> list[float]:
        await self.until(lambda: len(self.values(sensor_id)) >= n, f"{n} readings of {sensor_id}")
        return self.values(sensor_id)


class RecordingClock(SimulatedClock):
    """A real-time clock that notes which thread asked for each stamp."""

    def __init__(self) -> None:
        super().__init__(T0)
        self.stamp_threads: list[int] = []

    def stamp(self) -> Stamp:
        self.stamp_threads.append(threading.get_ident())
        return super().stamp()


def spec(
    sensor_id: str,
    kind: SensorKind,
    pin: int,
    *,
    pull_up: bool = True,
    active_high: bool | None = None,
    debounce_ms: int = 0,
    hold_s: float | None = None,
) -> GpioSpec:
    if active_high is None:
        active_high = default_active_high(kind, pull_up)
    return GpioSpec(sensor_id, kind, pin, pull_up, active_high, debounce_ms, hold_s)


@asynccontextmanager
async def running(
    specs: Sequence[GpioSpec],
    factory: Any,
    emit: Callable[[Reading], None] | None = None,
    clock: SimulatedClock | None = None,
) -> AsyncIterator[tuple[Collector, GpioSource]]:
    """A started GpioSource whose initial readings (one per sensor) have all arrived."""
    collector = Collector()
    source = GpioSource(specs, clock or SimulatedClock(T0), factory)

    def both(reading: Reading) -> None:
        collector(reading)
        if emit is not None:
            emit(reading)

    task = asyncio.create_task(source.run(both))
    try:
        await collector.until(
            lambda: all(
                collector.values(s.sensor_id) for s in specs if s.sensor_id not in source.failed
            ),
            "the initial state of every sensor",
        )
        yield collector, source
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def pins(factory: Any, *numbers: int) -> list[Any]:
    return [factory.pin(n) for n in numbers]


# --- choosing the pin factory ---------------------------------------------------------------


@pytest.mark.skipif(bool(gpio_chips()), reason="this machine has a GPIO chip")
def test_chooser_picks_mock_pins_on_a_machine_without_gpio_chip() -> None:
    factory, reason = choose_pin_factory(None)
    assert isinstance(factory, MockFactory)
    assert factory.pin_class is DebouncedMockPin
    assert "/dev/gpiochip" in reason and "no GPIO chip" in reason


def test_chooser_uses_mock_pins_when_configured(tmp_path: Path) -> None:
    (tmp_path / "gpiochip0").touch()  # even with a chip present
    factory, reason = choose_pin_factory(True, dev_dir=tmp_path)
    assert isinstance(factory, MockFactory)
    assert "requested" in reason


def test_chooser_refuses_real_gpio_without_a_chip(tmp_path: Path) -> None:
    with pytest.raises(GpioUnavailable, match="no GPIO chip"):
        choose_pin_factory(False, dev_dir=tmp_path)


def test_chooser_never_falls_back_to_mock_pins_on_a_machine_with_a_chip(tmp_path: Path) -> None:
    # Here lgpio is missing (or there is no Pi behind the fake chip): that must be an error
    # naming the cause, never silently dead pull cords on mock pins.
    (tmp_path / "gpiochip0").touch()
    with pytest.raises(GpioUnavailable, match="lgpio"):
        choose_pin_factory(None, dev_dir=tmp_path)


@pytest.mark.skipif(bool(gpio_chips()), reason="this machine has a GPIO chip")
@run
async def test_source_says_why_it_cannot_read_real_gpio(caplog: pytest.LogCaptureFixture) -> None:
    source = GpioSource([spec("cord", K.BUTTON, 13)], SimulatedClock(T0), mock=False)
    with pytest.raises(GpioUnavailable):
        await source.run(Collector())
    assert "GPIO sensors not started: real GPIO requested but there is no GPIO chip" in caplog.text


@pytest.mark.skipif(bool(gpio_chips()), reason="this machine has a GPIO chip")
@run
async def test_source_logs_which_pins_and_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.gpio")
    collector = Collector()
    source = GpioSource([spec("hall", K.MOTION, 5)], SimulatedClock(T0))
    task = asyncio.create_task(source.run(collector))
    await collector.count("hall", 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.pin_factory_reason is not None and "no GPIO chip" in source.pin_factory_reason
    assert "GPIO pins: MockFactory (no GPIO chip on this machine" in caplog.text
    assert "hall: motion on GPIO 5, pull-up, active high" in caplog.text


# --- specs from the config ------------------------------------------------------------------


def _sensor(kind: str, **wiring: Any) -> SensorConfig:
    return SensorConfig.model_validate(
        {"id": "s", "kind": kind, "room": "Hall", "source": "gpio", "pin": 17, **wiring}
    )


@pytest.mark.parametrize(
    ("kind", "quantity", "active_high_with_pull_up", "active_high_with_pull_down"),
    [
        ("motion", Quantity.MOTION, True, True),
        ("contact", Quantity.CONTACT, True, False),  # NC reed: open lets the resistor win
        ("button", Quantity.BUTTON, False, True),
        ("pressure_mat", Quantity.OCCUPANCY, False, True),
        ("leak", Quantity.LEAK, False, True),
    ],
)
def test_spec_from_config_resolves_quantity_and_active_level(
    kind: str,
    quantity: Quantity,
    active_high_with_pull_up: bool,
    active_high_with_pull_down: bool,
) -> None:
    up = GpioSpec.from_config(_sensor(kind))
    down = GpioSpec.from_config(_sensor(kind, pull_up=False))
    assert (up.quantity, up.pin, up.pull_up, up.debounce_ms) == (quantity, 17, True, 50)
    assert up.active_high is active_high_with_pull_up
    assert down.active_high is active_high_with_pull_down
    flipped = GpioSpec.from_config(_sensor(kind, active_high=not active_high_with_pull_up))
    assert flipped.active_high is (not active_high_with_pull_up)


def test_spec_from_config_carries_debounce_and_hold() -> None:
    cord = GpioSpec.from_config(_sensor("button", debounce_ms=20, hold_s=1.5))
    assert (cord.debounce_ms, cord.debounce_s, cord.hold_s) == (20, 0.02, 1.5)
    assert GpioSpec.from_config(_sensor("button", debounce_ms=0)).debounce_s is None


def test_spec_rejects_what_gpio_cannot_read() -> None:
    ble = SensorConfig.model_validate(
        {
            "id": "t",
            "kind": "climate",
            "room": "Hall",
            "source": "ble",
            "address": "A4:C1:38:12:34:56",
        }
    )
    with pytest.raises(ValueError, match="not a GPIO sensor"):
        GpioSpec.from_config(ble)
    with pytest.raises(ValueError, match="cannot be wired to GPIO"):
        GpioSpec("t", K.CLIMATE, 4, True, False)
    with pytest.raises(ValueError, match="only applies to buttons"):
        GpioSpec("m", K.MOTION, 4, True, True, hold_s=1.0)


def test_importing_the_driver_does_not_import_gpiozero() -> None:
    code = "import sys, hub, drivers.gpio; sys.exit('gpiozero' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
    assert result.returncode == 0


# --- every kind, both directions ------------------------------------------------------------

# (kind, quantity, drive the pin to the idle level, drive it to the active level), default wiring
KINDS = [
    (K.MOTION, Quantity.MOTION, "drive_low", "drive_high"),
    (K.CONTACT, Quantity.CONTACT, "drive_low", "drive_high"),
    (K.BUTTON, Quantity.BUTTON, "drive_high", "drive_low"),
    (K.PRESSURE_MAT, Quantity.OCCUPANCY, "drive_high", "drive_low"),
    (K.LEAK, Quantity.LEAK, "drive_high", "drive_low"),
]


@pytest.mark.parametrize(("kind", "quantity", "idle", "active"), KINDS)
@run
async def test_each_kind_reports_its_changes(
    kind: SensorKind, quantity: Quantity, idle: str, active: str
) -> None:
    factory = mock_pin_factory()
    (pin,) = pins(factory, 17)
    getattr(pin, idle)()
    async with running([spec("s", kind, 17)], factory) as (readings, _):
        getattr(pin, active)()
        await readings.count("s", 2)
        getattr(pin, idle)()
        assert await readings.count("s", 3) == [0.0, 1.0, 0.0]
    assert {r.quantity for r in readings.readings} == {quantity}


@run
async def test_initial_state_of_every_sensor_is_reported_once_at_start() -> None:
    factory = mock_pin_factory()
    motion, door, cord, mat, leak = pins(factory, 5, 6, 13, 19, 26)
    motion.drive_high()  # someone moving
    door.drive_low()  # door shut: the reed switch holds the line low against the pull-up
    cord.drive_high()  # cord not pulled
    mat.drive_low()  # someone in bed
    leak.drive_high()  # dry
    specs = [
        spec("motion", K.MOTION, 5),
        spec("door", K.CONTACT, 6),
        spec("cord", K.BUTTON, 13, hold_s=1.0),
        spec("mat", K.PRESSURE_MAT, 19),
        spec("leak", K.LEAK, 26),
    ]
    async with running(specs, factory) as (readings, _):
        # One more change as a barrier: anything else the start produced arrives before it.
        door.drive_high()
        await readings.count("door", 2)
        assert {r.sensor_id: r.value for r in readings.readings[:5]} == {
            "motion": 1.0,
            "door": 0.0,
            "cord": 0.0,
            "mat": 1.0,
            "leak": 0.0,
        }
        assert len(readings.readings) == 6
        assert [r.quantity for r in readings.readings[:5]] == [
            Quantity.MOTION,
            Quantity.CONTACT,
            Quantity.BUTTON,
            Quantity.OCCUPANCY,
            Quantity.LEAK,
        ]


@run
async def test_a_cord_already_pulled_at_start_is_reported_at_once() -> None:
    # A latched or stuck cord when the hub (re)starts has been held longer than any hold.
    factory = mock_pin_factory()
    (cord,) = pins(factory, 13)
    cord.drive_low()
    async with running([spec("cord", K.BUTTON, 13, hold_s=30.0)], factory) as (readings, _):
        assert readings.values("cord") == [1.0]
        cord.drive_high()
        assert await readings.count("cord", 2) == [1.0, 0.0]


# --- inverted active state ------------------------------------------------------------------


@run
async def test_active_high_inverts_what_a_level_means() -> None:
    factory = mock_pin_factory()
    no_reed, nc_cord, mat_down = pins(factory, 17, 27, 22)
    no_reed.drive_high()  # a normally-open reed: open circuit while the door is shut
    nc_cord.drive_low()  # a normally-closed cord: holds the line low until pulled
    mat_down.drive_low()  # a mat switched to 3V3, pull-down: empty
    specs = [
        spec("door", K.CONTACT, 17, active_high=False),
        spec("cord", K.BUTTON, 27, active_high=True),
        spec("mat", K.PRESSURE_MAT, 22, pull_up=False),  # default: active high
    ]
    async with running(specs, factory) as (readings, _):
        assert [readings.values(s) for s in ("door", "cord", "mat")] == [[0.0], [0.0], [0.0]]
        no_reed.drive_low()  # door opened: the reed closes
        nc_cord.drive_high()  # cord pulled: the switch opens, the pull-up takes the line high
        mat_down.drive_high()  # someone sits
        assert await readings.count("door", 2) == [0.0, 1.0]
        assert await readings.count("cord", 2) == [0.0, 1.0]
        assert await readings.count("mat", 2) == [0.0, 1.0]


# --- debounce -------------------------------------------------------------------------------


@run
async def test_contact_bounce_within_the_debounce_time_gives_one_reading() -> None:
    factory = mock_pin_factory()
    (door,) = pins(factory, 17)
    door.drive_low()
    async with running([spec("door", K.CONTACT, 17, debounce_ms=100)], factory) as (readings, _):
        for _ in range(8):  # the stimulus: a reed switch chattering as the door opens
            door.drive_high()
            await asyncio.sleep(0.001)
            door.drive_low()
            await asyncio.sleep(0.001)
        door.drive_high()
        await readings.count("door", 2)
        door.drive_low()  # the barrier: a clean close
        assert await readings.count("door", 3) == [0.0, 1.0, 0.0]


@run
async def test_a_glitch_shorter_than_the_debounce_raises_no_leak() -> None:
    factory = mock_pin_factory()
    (probe,) = pins(factory, 26)
    probe.drive_high()
    clock = SimulatedClock(T0)
    leak = spec("leak", K.LEAK, 26, debounce_ms=100)
    async with running([leak], factory, clock=clock) as (readings, _):
        probe.drive_low()  # a spike on the probe wire
        await asyncio.sleep(0.005)
        probe.drive_high()
        wet_at = clock.monotonic()
        probe.drive_low()  # now really wet
        assert await readings.count("leak", 2) == [0.0, 1.0]
        # Reported once the level had been stable for the debounce time, not before.
        assert readings.of("leak")[1].stamp.monotonic >= wet_at + 0.1


# --- buttons and holds ----------------------------------------------------------------------


@run
async def test_button_without_hold_time_reports_press_and_release() -> None:
    factory = mock_pin_factory()
    (cord,) = pins(factory, 13)
    cord.drive_high()
    async with running([spec("cord", K.BUTTON, 13, debounce_ms=20)], factory) as (readings, _):
        cord.drive_low()
        assert await readings.count("cord", 2) == [0.0, 1.0]
        cord.drive_high()
        assert await readings.count("cord", 3) == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("debounce_ms", [0, 20])
@run
async def test_a_short_press_is_not_a_hold_and_a_hold_is(debounce_ms: int) -> None:
    hold_s = 0.3
    factory = mock_pin_factory()
    (cord,) = pins(factory, 13)
    cord.drive_high()
    clock = SimulatedClock(T0)
    cord_spec = spec("cord", K.BUTTON, 13, debounce_ms=debounce_ms, hold_s=hold_s)
    async with running([cord_spec], factory, clock=clock) as (readings, _):
        cord.drive_low()  # a brush against the cord
        await asyncio.sleep(0.08)
        cord.drive_high()
        await asyncio.sleep(0.05)
        pressed_at = clock.monotonic()
        cord.drive_low()  # a real pull, held
        values = await readings.count("cord", 2)
        held = readings.of("cord")[1]
        # Had the brush's hold not been cancelled, it would have fired first, too early.
        assert held.value == 1.0
        assert held.stamp.monotonic >= pressed_at + hold_s
        cord.drive_high()
        values = await readings.count("cord", 3)
        assert values == [0.0, 1.0, 0.0]


# --- threads, errors, shutdown --------------------------------------------------------------


@run
async def test_emit_runs_on_the_loop_and_the_stamp_is_taken_at_the_edge() -> None:
    factory = mock_pin_factory()
    (door,) = pins(factory, 17)
    door.drive_low()
    clock = RecordingClock()
    async with running([spec("door", K.CONTACT, 17, debounce_ms=10)], factory, clock=clock) as (
        readings,
        _,
    ):
        door.drive_high()  # debounced: the change is reported from the pin's timer thread
        await readings.count("door", 2)
    loop_thread = threading.get_ident()
    assert readings.threads == {loop_thread}
    assert clock.stamp_threads[0] == loop_thread  # the initial state, read at start
    assert clock.stamp_threads[1] != loop_thread  # the edge, stamped where it was seen


@run
async def test_a_failing_emit_does_not_stop_the_sensor() -> None:
    factory = mock_pin_factory()
    (motion,) = pins(factory, 5)
    motion.drive_low()  # the PIR sees nobody

    def fussy(reading: Reading) -> None:
        if reading.value == 1.0:
            raise RuntimeError("store full")

    async with running([spec("hall", K.MOTION, 5)], factory, emit=fussy) as (readings, _):
        motion.drive_high()
        await readings.count("hall", 2)
        motion.drive_low()
        assert await readings.count("hall", 3) == [0.0, 1.0, 0.0]


@run
async def test_a_sensor_that_cannot_be_opened_does_not_stop_the_others() -> None:
    factory = mock_pin_factory()
    (motion,) = pins(factory, 5)
    motion.drive_low()  # the PIR sees nobody
    specs = [spec("hall", K.MOTION, 5), spec("clash", K.LEAK, 5)]  # the same pin twice
    async with running(specs, factory) as (readings, source):
        assert set(source.failed) == {"clash"}
        assert "GPIOPinInUse" in source.failed["clash"]
        motion.drive_high()
        assert await readings.count("hall", 2) == [0.0, 1.0]
        assert readings.values("clash") == []


@run
async def test_cancel_closes_the_devices_and_nothing_is_emitted_after() -> None:
    factory = mock_pin_factory()
    door, cord = pins(factory, 17, 13)
    door.drive_low()
    cord.drive_high()
    specs = [spec("door", K.CONTACT, 17), spec("cord", K.BUTTON, 13, hold_s=0.05)]
    async with running(specs, factory) as (readings, _):
        pass
    seen = list(readings.readings)
    assert len(seen) == 2
    # Released: the pins can be claimed again (gpiozero raises GPIOPinInUse otherwise) ...
    for number in (17, 13):
        DigitalInputDevice(number, pin_factory=factory).close()
    # ... and no longer reach the source: no callback, no hold timer, nothing queued.
    assert door.when_changed is None and cord.when_changed is None
    door.drive_high()
    cord.drive_low()
    await asyncio.sleep(0)  # one turn of the loop: anything queued would now have run
    assert readings.readings == seen


@run
async def test_a_hold_pending_at_cancel_is_never_published() -> None:
    hold_s = 0.1
    factory = mock_pin_factory()
    (cord,) = pins(factory, 13)
    cord.drive_high()
    loop = asyncio.get_running_loop()
    async with running([spec("cord", K.BUTTON, 13, hold_s=hold_s)], factory) as (readings, _):
        cord.drive_low()  # pressed; the hold would complete after hold_s
        due = loop.time() + hold_s
        await asyncio.sleep(0)  # let the source arm its hold timer on the loop
    # Absence needs the deadline to pass: wait for a loop timer set well after it.
    past_deadline = asyncio.Event()
    loop.call_at(due + 0.05, past_deadline.set)
    await asyncio.wait_for(past_deadline.wait(), WAIT_S)
    assert readings.values("cord") == [0.0]


@run
async def test_a_source_with_no_gpio_sensors_idles_until_cancelled() -> None:
    source = GpioSource([], SimulatedClock(T0), MockFactory())
    task = asyncio.create_task(source.run(Collector()))
    await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_plain_mockfactory_pins_ignore_bounce_which_is_why_ours_exist() -> None:
    # Guards the reason for DebouncedMockPin: if gpiozero's MockPin ever honours bounce,
    # this fails and the subclass can go.
    factory = MockFactory()
    events: list[int] = []
    device = DigitalInputDevice(17, pull_up=True, bounce_time=10.0, pin_factory=factory)
    device.when_activated = lambda: events.append(1)
    try:
        factory.pin(17).drive_low()
        assert events == [1]
    finally:
        device.close()

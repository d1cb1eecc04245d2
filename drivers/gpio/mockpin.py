"""A mock pin that behaves like the Pi's lgpio pins where our sensors depend on it.

gpiozero's MockPin keeps `bounce` but ignores it (gpiozero 2.0.1: "XXX Need to implement
this"), and a pull change drives a mock line even when a closed switch holds the real one.
Tests and demos would then see bounces and wiring that no Pi shows. This pin adds:

- lgpio's debounce: a level is reported once it has been stable for `bounce` seconds, so a
  bounce burst gives one change and a glitch shorter than `bounce` gives none (lgpio.h,
  lgGpioSetDebounce). A timer per edge, no polling.
- a wire: drive_high() / drive_low() hold the line like a switch or a sensor output, and the
  internal pull resistor can no longer move it (as on a real pin).

This module imports gpiozero; import it only where pins are made.
"""

from __future__ import annotations

import threading
from typing import Any

from gpiozero.pins.mock import MockPin  # type: ignore[import-untyped]


class DebouncedMockPin(MockPin):  # type: ignore[misc]  # gpiozero ships no type information
    def __init__(self, factory: Any, info: Any) -> None:
        self._wire_lock = threading.RLock()
        self._wire_level: bool | None = None  # None: nothing drives the line but the pull
        self._pulling = False
        self._settle_timer: threading.Timer | None = None
        self._generation = 0
        super().__init__(factory, info)
        self._reported: bool = self._state

    def drive_high(self) -> None:
        self._drive(True)

    def drive_low(self) -> None:
        self._drive(False)

    def _set_pull(self, value: str) -> None:
        # MockPin applies a pull by driving the line; mark those drives as the resistor's.
        with self._wire_lock:
            self._pulling = True
            try:
                super()._set_pull(value)
            finally:
                self._pulling = False

    def _drive(self, level: bool) -> None:
        with self._wire_lock:
            if not self._pulling:
                self._wire_level = level
            elif self._wire_level is not None:
                return  # a switch or sensor output holding the line beats the resistor
            if self._function != "input":
                raise AssertionError(f"cannot drive {self!r}: it is an output")
            if not self._change_state(level):
                return
            if not self._bounce:
                self._report(level)
                return
            self._generation += 1
            if self._settle_timer is not None:
                self._settle_timer.cancel()
            timer = threading.Timer(self._bounce, self._settle, args=(self._generation,))
            timer.daemon = True
            self._settle_timer = timer
            timer.start()

    def _settle(self, generation: int) -> None:
        with self._wire_lock:
            if generation != self._generation:
                return  # a later edge restarted the wait
            self._settle_timer = None
            self._report(self._state)

    def _report(self, level: bool) -> None:
        if level == self._reported:
            return  # back where it was: a glitch, not a change
        self._reported = level
        edge = "rising" if level else "falling"
        if self._when_changed is not None and self._edges in ("both", edge):
            self._call_when_changed()

    def close(self) -> None:
        with self._wire_lock:
            self._generation += 1
            if self._settle_timer is not None:
                self._settle_timer.cancel()
                self._settle_timer = None
        super().close()

"""Which pins the GPIO driver talks to: the Pi's (lgpio) or mock ones, and why.

A hub with a GPIO chip never falls back to mock pins on its own: a pull cord that silently
reads a mock pin is worse than a hub that says loudly that its GPIO is broken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

PinFactory: TypeAlias = Any  # a gpiozero Factory; gpiozero ships no type information

_NO_CHIP = "no GPIO chip on this machine (no /dev/gpiochip*)"


class GpioUnavailable(RuntimeError):
    """Real GPIO was wanted (or a GPIO chip exists) but cannot be used."""


def gpio_chips(dev_dir: Path = Path("/dev")) -> list[Path]:
    return sorted(dev_dir.glob("gpiochip*"))


def mock_pin_factory() -> PinFactory:
    """gpiozero's MockFactory with pins that debounce like lgpio (see mockpin)."""
    from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

    from drivers.gpio.mockpin import DebouncedMockPin

    return MockFactory(pin_class=DebouncedMockPin)


def choose_pin_factory(
    mock: bool | None, *, dev_dir: Path = Path("/dev")
) -> tuple[PinFactory, str]:
    """The pin factory to use and the reason, for the log.

    mock=True: mock pins. mock=False: lgpio or GpioUnavailable. mock=None (not configured):
    mock pins when the machine has no GPIO chip, otherwise lgpio or GpioUnavailable.
    """
    if mock:
        return mock_pin_factory(), "mock pins requested in the config"
    chips = gpio_chips(dev_dir)
    if not chips:
        if mock is None:
            return mock_pin_factory(), _NO_CHIP
        raise GpioUnavailable(f"real GPIO requested but there is {_NO_CHIP}")
    factory = _lgpio_factory()
    found = ", ".join(chip.name for chip in chips)
    return factory, f"GPIO chip found ({found}); lgpio on gpiochip{factory.chip}"


def _lgpio_factory() -> PinFactory:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory  # type: ignore[import-untyped]
    except ImportError as exc:
        raise GpioUnavailable(
            f"this machine has a GPIO chip but the lgpio module cannot be imported ({exc});"
            " install it (pip install lgpio, or apt install python3-lgpio), or set mock pins"
            " in the config to run without GPIO"
        ) from exc
    try:
        return LGPIOFactory()
    except Exception as exc:  # lgpio.error, PinUnknownPi, OSError: all mean "no usable GPIO"
        raise GpioUnavailable(
            f"cannot open the GPIO chip with lgpio: {exc} (is this a Raspberry Pi, and is the"
            " service user in the 'gpio' group?)"
        ) from exc

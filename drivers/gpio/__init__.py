"""GPIO sensors through gpiozero: PIR motion, reed contacts, pull cords, pressure mats, leaks.

Importing this package does not import gpiozero; that happens when pins are made.
"""

from drivers.gpio.factory import (
    GpioUnavailable,
    PinFactory,
    choose_pin_factory,
    gpio_chips,
    mock_pin_factory,
)
from drivers.gpio.source import GpioSource
from drivers.gpio.spec import QUANTITY_OF_KIND, GpioSpec, default_active_high

__all__ = [
    "QUANTITY_OF_KIND",
    "GpioSource",
    "GpioSpec",
    "GpioUnavailable",
    "PinFactory",
    "choose_pin_factory",
    "default_active_high",
    "gpio_chips",
    "mock_pin_factory",
]

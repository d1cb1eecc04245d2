"""What the sensor drivers need from the machine, as types only.

`machine.I2C` on the node, a fake in the hub's tests. Nothing here exists at run time on
MicroPython (no typing module there): modules import it under TYPE_CHECKING only.
"""

from typing import Protocol


class I2CBus(Protocol):
    """The subset of machine.I2C that the drivers use (positional arguments only)."""

    def writeto(self, __addr: int, __buf: bytes) -> int: ...

    def readfrom(self, __addr: int, __nbytes: int) -> bytes: ...

    def readfrom_mem(self, __addr: int, __memaddr: int, __nbytes: int) -> bytes: ...

    def writeto_mem(self, __addr: int, __memaddr: int, __buf: bytes) -> None: ...


class SleepMs(Protocol):
    """time.sleep_ms on the node."""

    def __call__(self, __ms: int) -> None: ...

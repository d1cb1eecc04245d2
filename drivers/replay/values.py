"""Which recorded values are believable: a line outside these ranges is a bad line, not a reading.

Wide on purpose: they catch garbage (a temperature of 480, a humidity of -3, a timestamp in
milliseconds), not unusual weather or a cold flat, which are exactly what the checks are for.
"""

from __future__ import annotations

import math

from hub.events import PLAUSIBLE, Quantity

# Unix seconds between 1990 and 2100: anything else is not a recording in seconds.
EARLIEST_T = 631_152_000.0
LATEST_T = 4_102_444_800.0


def implausible(quantity: Quantity, value: float) -> str | None:
    """Why `value` cannot be a real `quantity` reading, or None if it can."""
    if not math.isfinite(value):
        return f"{quantity} value is not a finite number"
    if quantity.is_binary:
        return None if value in (0.0, 1.0) else f"{quantity} value must be 0 or 1, got {value:g}"
    low, high = PLAUSIBLE[quantity]
    if low <= value <= high:
        return None
    return f"{value:g} is not a plausible {quantity} ({low:g} to {high:g} {quantity.unit})"


def bad_time(t: float) -> str | None:
    """Why `t` cannot be a recorded Unix time in seconds, or None if it can."""
    if not math.isfinite(t):
        return "time is not a finite number"
    if not EARLIEST_T <= t <= LATEST_T:
        return f"time {t:g} is not Unix seconds between 1990 and 2100"
    return None

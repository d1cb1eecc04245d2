"""Battery charge from its voltage: a rough straight line between empty and full.

Alkaline and NiMH cells do not discharge linearly, so the percentage is a guide for "change
the batteries soon", not a fuel gauge; the voltage itself is sent too when it fits.
"""


def percent(volts: float, empty: float, full: float) -> int:
    """0-100: `empty` volts and below is 0, `full` and above is 100."""
    if volts <= empty:
        return 0
    if volts >= full:
        return 100
    return round(100 * (volts - empty) / (full - empty))

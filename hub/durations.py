"""Durations as people type them on a command line: 90s, 45m, 24h, 7d."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError with the accepted forms when it is not a duration."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; use a number and a unit, e.g. 90s, 45m, 24h, 7d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]

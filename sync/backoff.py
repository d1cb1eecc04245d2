"""Pacing for the uploader: retry delays with full jitter, Retry-After, and a bandwidth cap.

Written here rather than taken from a retry library (tenacity, backoff): those wrap a call and
sleep inside it, while the uploader needs the delay as a number it can show in its status
("next attempt at"), cut short by an alert, and test with an injected clock. Each piece is a
few lines of arithmetic.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits
    uniform(0, min(cap, base * 2**n)) seconds (n from 0).

    Full jitter spreads a fleet that lost the council at the same moment over the whole
    window, so it does not come back in lock-step (ETSI EN 303 645 provision 5.9).
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay (without drawing it)."""
        # min() before the power would overflow after ~1000 failures: cap the exponent.
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 64))

    def next_delay(self) -> float:
        """Count one more failure and draw the delay before the next attempt."""
        delay = self.rng.uniform(0.0, self.ceiling())
        self.failures += 1
        return delay

    def at_cap(self) -> float:
        """Count a failure that retrying soon cannot fix (the council refused our batch):
        wait the full cap, jittered within its upper half so a fleet still spreads out."""
        self.failures += 1
        return self.rng.uniform(self.cap_s / 2, self.cap_s)

    def reset(self) -> None:
        self.failures = 0


RETRY_AFTER_SPREAD = 0.1  # up to +10 %: hubs told the same Retry-After do not return together


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).
    None when absent or unreadable; a date in the past means 0."""
    if value is None:
        return None
    text = value.strip()
    # ASCII digits only: str.isdigit() also takes "²" or "٣", which float() then refuses.
    if re.fullmatch(r"[0-9]+", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000"
        return None
    return max(0.0, when.timestamp() - now)


def honoured_delay(
    retry_after: float | None, jittered: float, cap_s: float, rng: random.Random
) -> float:
    """The wait after a 429/503. Retry-After is a floor (spread up to +10 %), our own
    jittered delay still applies when it is longer, and nothing exceeds `cap_s`: a proxy
    that says "come back tomorrow" must not hold an alert back longer than retry_max_s."""
    if retry_after is None:
        return jittered
    spread = retry_after * (1.0 + rng.uniform(0.0, RETRY_AFTER_SPREAD))
    return min(cap_s, max(spread, jittered))


class TokenBucket:
    """Average upload rate of `rate` bytes/s, with bursts up to `burst` bytes.

    A request larger than the bucket is still sent whole (the bucket goes into debt and the
    next request waits it off), so the long-run rate holds and no batch is ever too big to
    go. Time is passed in, so tests use a fake clock.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of bytes/s, got {rate}")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)  # a clock that went back adds nothing
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = now

    def wait_for(self, size: int, now: float) -> float:
        """How long to wait before sending `size` bytes (0 when within the budget)."""
        self._refill(now)
        # Ask for at most a full bucket: a bigger request would otherwise never fit (the
        # refill stops at `burst`); it goes into debt instead, which the next one waits off.
        return max(0.0, (min(size, self.burst) - self._tokens) / self.rate)

    def take(self, size: int, now: float) -> None:
        """Spend `size` bytes at `now` (call after waiting `wait_for`)."""
        self._refill(now)
        self._tokens -= size

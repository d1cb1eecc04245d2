"""Noticing, while this boot lasts, when NTP has synchronised the wall clock.

The store corrects unsynchronised stamps with the boot's origin (hub.store.clockfix), which
is knowable only during that boot. An outbox read corrects only the rows it returns, and
the uploader corrects the rest after each answer; a hub that is not uploading (not enrolled
yet, or buffering only) would never record the origin, and its events would stay
uncorrected after the next reboot. This loop asks once a minute; it costs a cached NTP check
and an index probe when there is nothing to do.
"""

from __future__ import annotations

import asyncio
import logging

from hub.store import Store, StoreWriteError, clockfix

log = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0  # SystemClock re-reads the kernel's NTP state at most this often


async def watch_clock(store: Store, every_s: float = CHECK_EVERY_S) -> None:
    """Correct the store's stamps whenever the boot's origin is (or becomes) known; returns
    at once for a clock whose stamps are never corrected (simulated, virtual)."""
    if clockfix.boot_of(store.clock) is None:
        return
    while True:
        try:
            await asyncio.to_thread(store.correct_clock)
        except StoreWriteError as exc:  # a full disk: the next check tries again
            log.warning("%s", exc)
        except Exception:  # never let the watch end: it alone corrects a hub not uploading
            log.exception("correcting the clock's stamps failed; trying again in a minute")
        await asyncio.sleep(every_s)  # real seconds: NTP syncs in real time

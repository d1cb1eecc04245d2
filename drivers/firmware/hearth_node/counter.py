"""The advert counter: strictly increasing across resets, with few flash writes.

Encrypted BTHome needs a counter that never repeats for a key (CTR mode would leak the
plaintexts) and never goes backwards (the hub's decoder drops a smaller counter as a replay).
Writing the counter to flash after every advert would wear the flash, so the node reserves
a block of values at a time: the file holds the first value not yet reserved; on start the
node continues from there and reserves the next block first, so a reset, a power cut or a
flat battery only ever skips values. One write per `block` adverts, plus one per power-on.

After a deep sleep the counter can come back from RTC memory (`carried`), which costs no
write at all while it stays inside the reserved block.
"""

import os

LIMIT = 1 << 32  # the BTHome counter is 4 bytes


class AdvertCounter:
    def __init__(self, path: str, block: int = 1024, carried: int | None = None) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self.path = path
        self.block = block
        self.reserved = self._load()
        if carried is not None and 0 <= carried < self.reserved:
            self.value = carried  # survived a deep sleep inside the reserved block
        else:
            self.value = self.reserved
            self._reserve(self.value)

    def _load(self) -> int:
        try:
            with open(self.path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            # No file yet (first boot) or a damaged one: start at 0. The hub's decoder accepts
            # a counter that restarts below 100, as after a battery change.
            return 0

    def _reserve(self, start: int) -> None:
        self.reserved = min(start + self.block, LIMIT)
        temporary = self.path + ".new"
        with open(temporary, "w") as f:
            f.write(str(self.reserved))
        # Replace in one step so a power cut leaves the old reservation or the new one.
        os.rename(temporary, self.path)

    def next(self) -> int:
        """The counter for the next advert: one more than the last one returned."""
        if self.value >= LIMIT:
            # 2**32 adverts is over 8,000 years at one a minute; wrap rather than stop.
            self.value = 0
            self._reserve(0)
        elif self.value >= self.reserved:
            self._reserve(self.value)
        value = self.value
        self.value += 1
        return value

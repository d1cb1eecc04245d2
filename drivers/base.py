"""The seam every driver implements: something that produces Readings until cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hub.events import Reading

Emit = Callable[[Reading], None]


class ReadingSource(Protocol):
    """A driver. `run` emits readings until it is cancelled; it must never raise for bad
    input from the world (log and count it instead), so one bad sensor cannot stop the hub."""

    name: str

    async def run(self, emit: Emit) -> None: ...

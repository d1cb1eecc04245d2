"""What the format readers share: the Record they yield, the tally of what a replay read,
kept and refused, and a line reader that never raises.

Readers never raise for bad input: they tell a ReplayStats and carry on, so one bad line in a
million-line log costs one line, not the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from hub.events import Quantity

log = logging.getLogger("drivers.replay")

MAX_EXAMPLES = 20  # bad lines and notes kept verbatim; the rest are only counted


class SensorKey(NamedTuple):
    """Who a recorded line belongs to, before it has a hub sensor id.

    `name` is the text the id is made from (e.g. "M003 Bed", "Bathroom climate"); `room` is
    the human room name (a CASAS location, an open-smart-home room) or "unknown".
    """

    name: str
    room: str


class Record(NamedTuple):
    """One recorded value, stamped with the recorded time (Unix seconds, UTC)."""

    t: float
    key: SensorKey
    quantity: Quantity
    value: float
    synced: bool
    path: str
    line: int


@dataclass
class ReplayStats:
    """Counts for the operator: what was read, replayed, skipped and why."""

    files: int = 0
    lines_read: int = 0
    readings_emitted: int = 0
    bad_lines: int = 0
    bad_files: int = 0
    skipped: int = 0  # valid lines that are not readings (alerts, system events in an export)
    out_of_order: int = 0  # earlier than the reading before it: emitted, but time did not go back
    dst_ambiguous: int = 0  # local times in the repeated hour when clocks go back
    dst_nonexistent: int = 0  # local times in the skipped hour when clocks go forward
    examples: list[str] = field(default_factory=list)  # "file:line: reason" for the first few
    notes: list[str] = field(default_factory=list)  # decisions worth knowing about (DST, ...)
    quiet: bool = False  # True: count and keep examples without logging (a look-ahead scan)

    def bad_line(self, path: str, line: int, reason: str, text: str) -> None:
        self.bad_lines += 1
        if len(self.examples) < MAX_EXAMPLES:
            shown = text.strip()
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            reason = reason if len(reason) <= 120 else reason[:117] + "..."
            message = f"{path}:{line}: {reason}: {shown!r}"
            self.examples.append(message)
            if not self.quiet:
                log.warning("replay: bad line %s", message)

    def bad_file(self, path: str, reason: str) -> None:
        self.bad_files += 1
        message = f"{path}: {reason}"
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(message)
        if not self.quiet:
            log.warning("replay: skipping file %s", message)

    def note(self, message: str) -> None:
        if len(self.notes) < MAX_EXAMPLES:
            self.notes.append(message)
            if not self.quiet:
                log.info("replay: %s", message)

    def summary(self) -> list[str]:
        """Human-readable lines for the CLI and the log."""
        lines = [
            f"{self.files} file(s), {self.lines_read} line(s) read,"
            f" {self.readings_emitted} reading(s) replayed"
        ]
        if self.skipped:
            lines.append(f"{self.skipped} line(s) skipped: not readings")
        if self.bad_lines or self.bad_files:
            lines.append(f"{self.bad_lines} bad line(s), {self.bad_files} bad file(s)")
            lines.extend(f"  {example}" for example in self.examples)
            hidden = self.bad_lines + self.bad_files - len(self.examples)
            if hidden > 0:
                lines.append(f"  ... and {hidden} more")
        if self.out_of_order:
            lines.append(f"{self.out_of_order} reading(s) earlier than the one before them")
        if self.dst_ambiguous or self.dst_nonexistent:
            lines.append(
                f"{self.dst_ambiguous} local time(s) in a repeated hour and"
                f" {self.dst_nonexistent} in a skipped hour (clock changes)"
            )
        lines.extend(f"  {note}" for note in self.notes)
        return lines


def numbered_lines(path: str, stats: ReplayStats) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a file; a file that cannot be read is a bad file.

    Undecodable bytes become U+FFFD and so a bad line, rather than a crash mid-replay.
    """
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
    except OSError as exc:
        stats.bad_file(path, f"cannot read: {exc.strerror or exc}")
        return
    stats.files += 1
    number = 0
    with handle:
        try:
            for number, text in enumerate(handle, 1):
                stats.lines_read += 1
                yield number, text
        except OSError as exc:
            stats.bad_file(path, f"read failed after line {number}: {exc.strerror or exc}")

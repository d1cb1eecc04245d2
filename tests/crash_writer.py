"""A hub writer for the crash test: writes events through the group committer and reports
each commit on stdout only after `Store.commit` has returned, until it is killed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hub.store import GroupCommitter, Store
from tests.factories import alert, reading


def report(seqs: object) -> None:
    seq_list = list(seqs)  # type: ignore[call-overload]
    os.write(1, f"committed {seq_list[0]} {seq_list[-1]}\n".encode())


def main() -> None:
    store = Store.open(Path(sys.argv[1]))
    committer = GroupCommitter(store, max_latency_s=0.002, max_batch=200, on_commit=report)
    committer.start()
    os.write(1, f"ready {store.last_seq}\n".encode())
    write_forever(committer)


def write_forever(committer: GroupCommitter) -> None:
    """Readings, and an alert now and then, until killed (tests/diskfull_writer.py too)."""
    i = 0
    while True:
        i += 1
        committer.add(reading(i, sensor=f"s{i % 5}"))
        if i % 173 == 0:
            committer.add(alert(i, check=f"c{i}"))  # committed before add() returns


if __name__ == "__main__":
    main()

"""A hub writer for the disk-full kill test: writes readings and alerts through the group
committer with the service's reserve, and reports each commit on stdout only after
`Store.commit` has returned, with the storage state then, until it is killed."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hub.store import GroupCommitter, Store, StoreLimits
from hub.store.diskfull import RESERVE_BYTES
from tests.crash_writer import write_forever


def main() -> None:
    limits = StoreLimits(reserve_bytes=RESERVE_BYTES, retention_days=36_500)
    store = Store.open(Path(sys.argv[1]), limits=limits)

    def report(seqs: Sequence[int]) -> None:
        """One line per run of consecutive numbers: a flush may commit in several steps,
        with the store's own events (gap, storage state) between them."""
        state = "full" if store.storage.full else "ok"
        runs: list[list[int]] = []
        for seq in seqs:
            if runs and runs[-1][1] == seq - 1:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        lines = "".join(f"committed {first} {last} {state}\n" for first, last in runs)
        os.write(1, lines.encode())

    committer = GroupCommitter(store, max_latency_s=0.002, max_batch=200, on_commit=report)
    committer.start()
    os.write(1, f"ready {store.last_seq}\n".encode())
    write_forever(committer)


if __name__ == "__main__":
    main()

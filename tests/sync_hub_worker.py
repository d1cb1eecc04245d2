"""A hub-like process for the sync kill -9 test, plus the pieces the fault tests share.

    python -m tests.sync_hub_worker HUB_DB IDENTITY_DIR HUB_ID COUNCIL_URL SEED MODE

MODE `run`: write events through the group committer (a burst after every upload round, so
writing and uploading overlap) and run the real uploader loop (`Uploader.run`) until killed.
MODE `drain`: write nothing, upload until the outbox is empty, print `drained`, exit 0.

Progress goes to stdout, one line per step, written with os.write (unbuffered) only after
the step happened, so the test can kill at a chosen moment without sleeping:

    ready LAST_SEQ QUEUE_DEPTH   store open, uploader starting
    committed FIRST LAST         a group commit returned
    send                         an upload request is about to go out
    answer STATUS                the council's answer arrived; the ack is not applied yet
    round OUTCOME HELD NEW       an upload round finished (ack applied)
    resent-synced SEQS           an upload carried events already marked synced (a bug)
    resent-acked SEQS            an upload carried events this process saw acked (a bug)
    drained                      (drain mode) the outbox is empty
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from hub.events import Event
from hub.identity import HubIdentity
from hub.store import GroupCommitter, Store, StoreLimits
from sync.client import make_http_client
from sync.codec import decode_batch
from sync.health import HealthReporter
from sync.protocol import UPLOAD_PATH, UploadAck, from_ranges
from sync.uploader import Outcome, RoundResult, Uploader, UploadSettings
from tests.factories import alert, reading, system

CLIENT_TIMEOUT_S = 0.2  # each stall costs one; the council answers in a few ms
BATCH_EVENTS = 20  # small batches: many upload attempts per event written
# The events carry fixed test stamps (tests.factories); the retention sweep would prune the
# synced ones as old, and the end-state check needs every event the hub ever committed.
KEEP_ALL = StoreLimits(retention_days=365 * 100)


class FastClock:
    """The real wall and monotonic time (signatures need a true timestamp), but sleeps are
    recorded and cut to `scale` of their length (at most `max_s`), so a backoff or a
    Retry-After of seconds costs milliseconds."""

    def __init__(self, scale: float = 0.0, max_s: float = 0.0) -> None:
        self.scale = scale
        self.max_s = max_s
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(min(seconds * self.scale, self.max_s))


def events_for(first_t: float, count: int, rng: random.Random) -> Iterator[Event]:
    """A realistic mix: readings from a few sensors, with now and then an alert (raised or
    cleared) or a system event. Stamps follow `first_t`, so bodies differ from each other."""
    for i in range(count):
        t = first_t + i
        roll = rng.random()
        if roll < 0.04:
            yield alert(t, check=f"check-{int(t) % 7}", room=f"room-{int(t) % 3}")
        elif roll < 0.06:
            yield system(t)
        else:
            sensor = f"sensor-{int(t) % 4}"
            yield reading(t, sensor=sensor, value=round(18 + rng.random() * 6, 2))


def synced_among(db: Path, seqs: list[int]) -> list[int]:
    """Which of `seqs` the hub's buffer has marked synced, read on a separate connection."""
    if not seqs:
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        marks = ",".join("?" * len(seqs))
        rows = conn.execute(
            f"SELECT seq FROM events WHERE synced = 1 AND seq IN ({marks})", seqs
        ).fetchall()
    finally:
        conn.close()
    return sorted(r[0] for r in rows)


class AuditedTransport(httpx.AsyncBaseTransport):
    """The uploader's real transport, plus checks of guarantee 2's second half (an
    acknowledged batch is never sent again), made where the hub's requests leave:

    - `on_resent_synced`: an upload carried events the buffer has marked synced;
    - `on_resent_acked`: an upload carried events an earlier answer, received whole by this
      client, listed as held (stricter: it also catches an ack that was ignored, not only
      one recorded wrongly). Per process: a kill between an ack and its recording rightly
      makes the next process send those events again.

    `on_request` / `on_response` let the worker report progress."""

    def __init__(
        self,
        db: Path,
        on_resent_synced: Callable[[list[int]], None],
        on_resent_acked: Callable[[list[int]], None],
        on_request: Callable[[], None] | None = None,
        on_response: Callable[[int], None] | None = None,
    ) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._db = db
        self._on_resent_synced = on_resent_synced
        self._on_resent_acked = on_resent_acked
        self._on_request = on_request
        self._on_response = on_response
        self.acked: set[int] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        upload = request.method == "POST" and request.url.path == UPLOAD_PATH
        if upload:
            seqs = [e.seq for e in decode_batch(request.content).events]
            synced = await asyncio.to_thread(synced_among, self._db, seqs)
            if synced:
                self._on_resent_synced(synced)
            acked = sorted(self.acked.intersection(seqs))
            if acked:
                self._on_resent_acked(acked)
        if self._on_request is not None:
            self._on_request()
        response = await self._inner.handle_async_request(request)
        if upload and response.status_code == 200:
            # Read the answer here to learn what it acknowledged; hand on the same bytes.
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            probe = httpx.Response(200, headers=response.headers, content=raw)
            self.acked.update(from_ranges(UploadAck.model_validate(probe.json()).held))
            response = httpx.Response(
                200,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
            )
        if self._on_response is not None:
            self._on_response(response.status_code)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


class _Worker(Uploader):
    """The real uploader; each finished round is reported, then (in run mode) a burst of new
    events goes to the group committer, so the next round overlaps with commits."""

    def __init__(self, *args: Any, produce: bool, rng: random.Random, **kwargs: Any) -> None:
        super().__init__(*args, rng=rng, **kwargs)
        self.rng = rng
        self.produce = produce
        self.committer: GroupCommitter | None = None
        # Committed events carry t == seq (each run starts above the last commit): unique.
        self.next_t = float(self.store.last_seq + 1)
        self.drained = asyncio.Event()

    async def upload_once(self) -> RoundResult:
        result = await super().upload_once()
        say(f"round {result.outcome.value} {result.held} {result.new}")
        if self.produce and self.committer is not None:
            count = self.rng.randint(0, 2 * BATCH_EVENTS)
            for event in events_for(self.next_t, count, self.rng):
                self.committer.add(event)  # an alert commits here, before add returns
            self.next_t += count
        elif result.outcome is Outcome.EMPTY and self.store.queue_depth() == 0:
            self.drained.set()
        return result


async def _main(db: Path, identity_dir: Path, hub_id: str, url: str, seed: int, mode: str) -> None:
    store = Store.open(db, limits=KEEP_ALL)
    say(f"ready {store.last_seq} {store.queue_depth()}")
    transport = AuditedTransport(
        db,
        on_resent_synced=lambda seqs: say(f"resent-synced {' '.join(map(str, seqs))}"),
        on_resent_acked=lambda seqs: say(f"resent-acked {' '.join(map(str, seqs))}"),
        on_request=lambda: say("send"),
        on_response=lambda status: say(f"answer {status}"),
    )
    http = make_http_client(ca_bundle=None, timeout_s=CLIENT_TIMEOUT_S, transport=transport)
    settings = UploadSettings(url=url, batch_max_events=BATCH_EVENTS, timeout_s=CLIENT_TIMEOUT_S)
    uploader = _Worker(
        store,
        HubIdentity.load(identity_dir),
        hub_id,
        settings,
        http,
        health=HealthReporter(data_dir=db.parent),
        clock=FastClock(scale=0.001, max_s=0.01),
        rng=random.Random(seed),
        produce=mode == "run",
    )

    def committed(seqs: Sequence[int]) -> None:
        say(f"committed {seqs[0]} {seqs[-1]}")
        uploader.wake()  # hearth run wakes it for alerts only; every commit keeps it busy

    committer = GroupCommitter(store, max_latency_s=0.005, on_commit=committed)
    committer.start()
    uploader.committer = committer
    task = asyncio.create_task(uploader.run())
    await uploader.drained.wait()  # run mode: never set, the test kills the process
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    committer.close()
    await http.aclose()
    store.close()
    say("drained")


def main() -> None:
    db, identity_dir, hub_id, url, seed, mode = sys.argv[1:7]
    if mode not in ("run", "drain"):
        raise SystemExit(f"unknown mode {mode!r}")
    asyncio.run(_main(Path(db), Path(identity_dir), hub_id, url, int(seed), mode))


if __name__ == "__main__":
    main()

"""Guarantee 2 under faults: delivery to the council is effectively exactly once.

The real uploader (sync.uploader) reads a real hub buffer (SQLite file) and talks through the
fault proxy (tests.faultproxy) to the real council (uvicorn on loopback) on SQLite and on
PostgreSQL. The proxy refuses connections, resets requests half way, stalls past the client's
timeout (before the council sees the request, and after it has committed), answers
500/503/429 itself, and drops answers the council has committed. Events keep arriving while
this goes on, and in the second test the hub process itself is killed with SIGKILL at random
moments (just after a commit, as a request leaves, between the council's answer and the hub
recording it).

At the end: the council holds exactly the hub's events, compared on (seq, body), none
missing, none stored twice; the hub's outbox is empty; no upload ever carried an event
already acknowledged; every 429/503 was waited out for at least its Retry-After.

HEARTH_FAULT_ATTEMPTS (default 1000) sets the upload attempts per engine, HEARTH_SYNC_KILLS
(default 20) the kills; run with -s to see the counts tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.events import StoredEvent
from hub.store import GroupCommitter, Store
from sync.client import make_http_client
from sync.health import HealthReporter
from sync.protocol import UPLOAD_PATH
from sync.uploader import Outcome, RoundResult, Uploader, UploadSettings
from tests.council_server import CouncilServer, running_council
from tests.faultproxy import FAULTS, Fault, FaultProxy, ProxyStats
from tests.sync_hub_worker import (
    BATCH_EVENTS,
    CLIENT_TIMEOUT_S,
    KEEP_ALL,
    AuditedTransport,
    FastClock,
    events_for,
)

ROOT = Path(__file__).resolve().parent.parent
ATTEMPTS = int(os.environ.get("HEARTH_FAULT_ATTEMPTS", "1000"))
KILLS = int(os.environ.get("HEARTH_SYNC_KILLS", "20"))
UPLOAD = f"POST {UPLOAD_PATH}"
INITIAL_EVENTS = 2000

# About half the requests meet a fault. Stalls are rarer than the cheap faults because each
# costs a client timeout; they still occur 20+ times in the default run.
WEIGHTS: Mapping[Fault, float] = {
    Fault.NONE: 50,
    Fault.REFUSE: 7,
    Fault.RESET: 7,
    Fault.STALL: 2.5,
    Fault.STALL_RESPONSE: 2.5,
    Fault.HTTP_500: 6,
    Fault.HTTP_503: 6,
    Fault.HTTP_429: 6,
    Fault.DROP_RESPONSE: 8,
}


def min_per_kind(attempts: int) -> int:
    """Each fault kind must occur at least this often (the rarest is expected ~2.5 % of the
    time: 25 in 1,000; with the seeded draws the floor leaves a wide margin)."""
    return max(2, attempts // 100)


# -- the council under test ------------------------------------------------------------------


@pytest.fixture
def council_url(council_db_on_each_engine: str) -> str:
    return council_db_on_each_engine


def engine_of(url: str) -> str:
    return url.split(":", 1)[0].split("+")[0]


def proxy_to(council: CouncilServer, seed: int) -> FaultProxy:
    port = int(council.url.rsplit(":", 1)[1])
    return FaultProxy(("127.0.0.1", port), weights=WEIGHTS, seed=seed, retry_after=(1, 3))


# -- the end state -----------------------------------------------------------------------------


def hub_records(store: Store) -> dict[int, dict[str, Any]]:
    """Every event in the hub's buffer as the wire record the council stores as `body`
    (through JSON, as the council holds it)."""
    out: dict[int, dict[str, Any]] = {}
    after = 0
    while batch := store.events(after, 5000):
        for stored in batch:
            out[stored.seq] = json.loads(
                json.dumps(StoredEvent(stored.seq, stored.event).to_record())
            )
        after = batch[-1].seq
    return out


def council_rows(council: CouncilServer, hub_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Every row the council holds for the hub, read straight from its database."""
    with council.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT seq, body FROM events WHERE hub_id = :hub ORDER BY id"),
            {"hub": hub_id},
        ).all()
    return [(int(seq), json.loads(body) if isinstance(body, str) else body) for seq, body in rows]


def exactly_once_problems(
    hub: Mapping[int, dict[str, Any]], council: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    """What keeps the council from holding exactly the hub's events; empty when it does."""
    problems = []
    per_seq = Counter(seq for seq, _ in council)
    stored_twice = sorted(seq for seq, n in per_seq.items() if n > 1)
    if stored_twice:
        problems.append(f"{len(stored_twice)} seqs stored more than once: {stored_twice[:10]}")
    # The same event under two numbers is a duplicate too (a renumbering gone wrong).
    contents = Counter(
        json.dumps({k: v for k, v in b.items() if k != "seq"}, sort_keys=True) for _, b in council
    )
    repeated = [c for c, n in contents.items() if n > 1]
    if repeated:
        problems.append(f"{len(repeated)} events stored under several seqs: {repeated[:3]}")
    held = dict(council)
    missing = sorted(set(hub) - set(held))
    if missing:
        problems.append(f"{len(missing)} hub events missing at the council: {missing[:10]}")
    extra = sorted(set(held) - set(hub))
    if extra:
        problems.append(f"{len(extra)} council events the hub never had: {extra[:10]}")
    differ = sorted(s for s in set(hub) & set(held) if hub[s] != held[s])
    if differ:
        s = differ[0]
        problems.append(f"{len(differ)} events differ, e.g. seq {s}: {hub[s]} != {held[s]}")
    return problems


def test_the_exactly_once_check_sees_each_kind_of_failure() -> None:
    """The end-state check must be able to fail: missing, twice, renumbered twice, altered."""
    hub = {1: {"seq": 1, "kind": "reading", "value": 1.0}, 2: {"seq": 2, "kind": "alert"}}
    good = [(1, hub[1]), (2, hub[2])]
    assert exactly_once_problems(hub, good) == []
    assert "missing" in " ".join(exactly_once_problems(hub, good[:1]))
    assert "more than once" in " ".join(exactly_once_problems(hub, [*good, good[0]]))
    moved = [*good, (3, {**hub[1], "seq": 3})]
    assert "several seqs" in " ".join(exactly_once_problems(hub, moved))
    altered = [(1, {**hub[1], "value": 2.0}), (2, hub[2])]
    assert "differ" in " ".join(exactly_once_problems(hub, altered))


@dataclass
class Tally:
    """What the uploader saw, round by round."""

    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # After each 429/503 the uploader saw: (its delay, the Retry-After the proxy sent, which
    # the proxy also puts in the error detail, so no answer lost to a timeout misaligns them).
    busy: list[tuple[float, int]] = field(default_factory=list)
    held: int = 0
    new: int = 0
    renumbered: int = 0
    resent_synced: list[int] = field(default_factory=list)
    resent_acked: list[int] = field(default_factory=list)

    def add(self, result: RoundResult) -> None:
        self.outcomes[result.outcome.value] += 1
        self.held += result.held
        self.new += result.new
        self.renumbered += result.renumbered
        if result.error is not None:
            self.errors[_error_kind(result.error)] += 1
            busy = re.search(r"busy \((?:429|503)\).*Retry-After (\d+)", result.error)
            if busy:
                self.busy.append((result.delay_s, int(busy.group(1))))


def _error_kind(error: str) -> str:
    match = re.search(r"\((\w+Error|\w+Timeout|\d{3})\b", error)
    return match.group(1) if match else error[:60]


def counts_table(title: str, stats: ProxyStats, extra: Mapping[str, object]) -> str:
    lines = [f"{title}", f"  {'upload attempts (at the proxy)':<40}{stats.attempts(UPLOAD):>8}"]
    lines.append(f"  {'connections':<40}{stats.connections:>8}")
    lines.append(f"  {'requests forwarded whole to the council':<40}{stats.forwarded:>8}")
    for kind in (Fault.NONE, *FAULTS):
        lines.append(f"  {'fault ' + kind.value:<40}{stats.faults[kind]:>8}")
    for name, value in extra.items():
        lines.append(f"  {name:<40}{value!s:>8}")
    return "\n".join(lines)


def check_end_state(
    hub: Mapping[int, dict[str, Any]],
    council: list[tuple[int, dict[str, Any]]],
    store: Store,
    stats: ProxyStats,
    tally: Tally,
) -> None:
    assert stats.errors == Counter(), f"the proxy met traffic it cannot frame: {stats.errors}"
    assert store.queue_depth() == 0, "the hub's outbox is not empty"
    problems = exactly_once_problems(hub, council)
    assert problems == [], "\n".join(problems)
    assert tally.resent_synced == [], "an upload carried events already marked synced"
    assert tally.resent_acked == [], "an upload carried events already acknowledged"
    assert tally.renumbered == 0, "the council reported conflicts that no fault can cause"
    low = min_per_kind(stats.attempts(UPLOAD))
    rare = {k.value: stats.faults[k] for k in FAULTS if stats.faults[k] < low}
    assert not rare, f"fault kinds seen fewer than {low} times: {rare}"
    # Retry-After is a floor: each 429/503 answer was waited out for at least its value.
    # (Not vacuous: most of them reach the uploader; one can be lost to a client timeout.)
    busy_sent = stats.faults[Fault.HTTP_429] + stats.faults[Fault.HTTP_503]
    assert busy_sent * 0.9 <= len(tally.busy) <= busy_sent, (len(tally.busy), busy_sent)
    short = [(delay, after) for delay, after in tally.busy if delay < after]
    assert not short, f"waited less than Retry-After (delay, Retry-After): {short[:5]}"


# -- 1,000 attempts through the faults, events arriving meanwhile ------------------------------


class Producer:
    """Writes bursts of events through the hub's group committer on its own thread while the
    uploader runs, as the hub's drivers and checks do."""

    def __init__(self, store: Store, rng: random.Random) -> None:
        self.committer = GroupCommitter(store, max_latency_s=0.005)
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._rng = rng
        self._next_t = float(store.last_seq + 1)
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def start(self) -> None:
        self.committer.start()
        self._thread.start()

    def submit(self, count: int) -> None:
        self._jobs.put(count)

    def _run(self) -> None:
        while (count := self._jobs.get()) is not None:
            for event in events_for(self._next_t, count, self._rng):
                self.committer.add(event)
            self._next_t += count
            self.written += count
            self._jobs.task_done()
        self._jobs.task_done()

    def settle(self) -> None:
        """Wait until every burst submitted so far is committed."""
        self._jobs.join()
        self.committer.flush()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)
        self.committer.close()


async def upload_through_faults(
    uploader: Uploader,
    clock: FastClock,
    proxy: FaultProxy,
    producer: Producer,
    tally: Tally,
    rng: random.Random,
) -> None:
    """The uploader's own loop (as `Uploader.run`), with new events submitted while the
    attempts run up to ATTEMPTS, then until the outbox is empty. Waits go to the fast clock."""
    limit = 3 * ATTEMPTS + 500  # a healthy run needs about ATTEMPTS + 50
    for _ in range(limit):
        producing = proxy.stats().attempts(UPLOAD) < ATTEMPTS
        if producing and rng.random() < 0.5:
            producer.submit(rng.randint(1, 30))
        result = await uploader.upload_once()
        tally.add(result)
        if result.outcome is Outcome.REFUSED:
            raise AssertionError(f"the council refused the hub's own batch: {result.error}")
        if result.outcome is Outcome.RETRY:
            await clock.sleep(result.delay_s)
        elif result.outcome is Outcome.EMPTY:
            if producing:
                producer.submit(rng.randint(1, 30))
            await asyncio.to_thread(producer.settle)
            if not producing and uploader.store.queue_depth() == 0:
                return
    raise AssertionError(f"not drained after {limit} rounds: {tally}")


def test_exactly_once_through_network_faults(council_url: str, tmp_path: Path) -> None:
    seed = 20261128
    started = time.monotonic()
    with running_council(council_url) as council, proxy_to(council, seed) as proxy:
        hub_id, identity = council.enroll(tmp_path / "identity")
        db = tmp_path / "hub.db"
        store = Store.open(db, limits=KEEP_ALL)
        rng = random.Random(seed)
        store.commit(list(events_for(1.0, INITIAL_EVENTS, rng)))
        producer = Producer(store, random.Random(seed + 1))
        producer.start()
        clock = FastClock()
        tally = Tally()
        transport = AuditedTransport(
            db,
            on_resent_synced=tally.resent_synced.extend,
            on_resent_acked=tally.resent_acked.extend,
        )

        async def run() -> None:
            http = make_http_client(ca_bundle=None, timeout_s=CLIENT_TIMEOUT_S, transport=transport)
            settings = UploadSettings(
                url=proxy.url, batch_max_events=BATCH_EVENTS, timeout_s=CLIENT_TIMEOUT_S
            )
            uploader = Uploader(
                store,
                identity,
                hub_id,
                settings,
                http,
                health=HealthReporter(data_dir=tmp_path),
                clock=clock,
                rng=random.Random(seed),
            )
            try:
                await upload_through_faults(uploader, clock, proxy, producer, tally, rng)
            finally:
                await http.aclose()

        try:
            asyncio.run(run())
        finally:
            producer.stop()
        stats = proxy.stats()
        hub, rows = hub_records(store), council_rows(council, hub_id)
        engine = engine_of(council_url)
        print(
            "\n"
            + counts_table(
                f"network faults, council on {engine}",
                stats,
                {
                    "hub events": len(hub),
                    "  of which written while uploading": producer.written,
                    "council rows for the hub": len(rows),
                    "seqs held more than once": sum(
                        n > 1 for n in Counter(seq for seq, _ in rows).values()
                    ),
                    "rounds acknowledged": tally.outcomes["sent"],
                    "events re-sent, absorbed as duplicates": tally.held - tally.new,
                    "429/503 waited out >= Retry-After": len(tally.busy),
                    "seconds": f"{time.monotonic() - started:.1f}",
                },
            )
        )
        try:
            assert stats.attempts(UPLOAD) >= ATTEMPTS
            assert producer.written > 0
            check_end_state(hub, rows, store, stats, tally)
            # The council answered every request it received whole, and never with a 5xx.
            assert set(stats.upstream_status) == {200}, stats.upstream_status
        finally:
            store.close()


# -- kill -9 of the hub during uploads ---------------------------------------------------------


class Lines:
    """A child's stdout as lines, read on a thread so waiting on one has a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self._log = log
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for raw in stdout:
                self._queue.put(raw.decode().rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, name="worker-stdout", daemon=True).start()

    def wait_for(self, match: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching line within {timeout} s") from None
            if line is None:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"the worker exited; last lines {self.seen[-5:]}; {tail}")
            self.seen.append(line)
            if match(line):
                return line

    def rest(self, timeout: float = 30.0) -> None:
        """Collect what remains (after a kill) up to the end of the stream."""
        deadline = time.monotonic() + timeout
        while (line := self._queue.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)


def resent_absorbed(lines: list[str]) -> int:
    """Events the council already held when they came again (from `round sent HELD NEW`)."""
    total = 0
    for line in lines:
        word, *rest = line.split()
        if word == "round" and rest[0] == Outcome.SENT.value:
            total += int(rest[1]) - int(rest[2])
    return total


def start_worker(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], Lines]:
    """Start a worker; its stderr (the uploader's warnings, a traceback) goes to `log`."""
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sync_hub_worker", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    return proc, Lines(proc, log)


def integrity(db: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


# Kill moments: right after a commit, as an upload leaves, between the council's answer and
# the hub recording it (the window exactly-once hinges on), and after a whole round.
KILL_POINTS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("after a commit", lambda line: line.startswith("committed ")),
    ("as a request leaves", lambda line: line == "send"),
    ("between a 200 and the ack", lambda line: line == "answer 200"),
    ("after a round", lambda line: line.startswith("round ")),
)


@pytest.mark.ci_required
def test_exactly_once_when_the_hub_is_killed_during_uploads(
    council_url: str, tmp_path: Path
) -> None:
    seed = 20261129
    rng = random.Random(seed)
    started = time.monotonic()
    db = tmp_path / "hub.db"
    log = tmp_path / "worker.log"
    with running_council(council_url) as council:
        hub_id, _ = council.enroll(tmp_path / "identity")
        with proxy_to(council, seed) as proxy:
            kills: Counter[str] = Counter()
            resent: list[str] = []
            all_lines: list[str] = []
            args = [str(db), str(tmp_path / "identity"), hub_id, proxy.url]
            for kill in range(KILLS):
                proc, lines = start_worker([*args, str(seed + kill), "run"], log)
                try:
                    lines.wait_for(lambda line: line.startswith("ready "))
                    where, point = KILL_POINTS[kill % len(KILL_POINTS)]
                    for _ in range(rng.randint(1, 6)):
                        lines.wait_for(point)
                    proc.send_signal(signal.SIGKILL)
                finally:
                    proc.kill()
                    proc.wait(timeout=30)
                lines.rest()
                all_lines += lines.seen
                kills[where] += 1
                resent += [line for line in lines.seen if line.startswith("resent-")]
                assert integrity(db) == [("ok",)], f"kill {kill} ({where}) damaged the buffer"

            proc, lines = start_worker([*args, str(seed + KILLS), "drain"], log)
            try:
                lines.wait_for(lambda line: line == "drained", timeout=120)
                assert proc.wait(timeout=30) == 0
            finally:
                proc.kill()
                proc.wait(timeout=30)
            resent += [line for line in lines.seen if line.startswith("resent-")]
            all_lines += lines.seen
            stats = proxy.stats()

        assert integrity(db) == [("ok",)]
        store = Store.open(db, limits=KEEP_ALL)
        try:
            print(
                "\n"
                + counts_table(
                    f"hub kill -9 during uploads, council on {engine_of(council_url)}",
                    stats,
                    {
                        **{f"kills {where}": n for where, n in sorted(kills.items())},
                        "hub events": store.last_seq,
                        "events re-sent, absorbed as duplicates": resent_absorbed(all_lines),
                        "seconds": f"{time.monotonic() - started:.1f}",
                    },
                )
            )
            assert sum(kills.values()) == KILLS
            assert resent == [], f"uploads carried events already acknowledged: {resent[:5]}"
            assert store.queue_depth() == 0
            problems = exactly_once_problems(hub_records(store), council_rows(council, hub_id))
            assert problems == [], "\n".join(problems)
            assert stats.errors == Counter()
        finally:
            store.close()


# -- a reset mid-body is the client's fault, not the council's ---------------------------------


def test_an_upload_cut_off_mid_body_is_not_a_council_error(tmp_path: Path) -> None:
    """A hub on a flaky link often drops mid-upload; the council must shrug, not count it
    with its own failures (the counter tests and operators use to find council bugs)."""
    with running_council(f"sqlite:///{tmp_path / 'council.db'}") as council:
        hub_id, identity = council.enroll(tmp_path / "identity")
        port = int(council.url.rsplit(":", 1)[1])
        script = [Fault.RESET] * 3
        proxy = FaultProxy(
            ("127.0.0.1", port), script=script, weights={Fault.NONE: 1}, reset_in_body=True
        )
        store = Store.open(tmp_path / "hub.db", limits=KEEP_ALL)
        store.commit(list(events_for(1.0, 50, random.Random(1))))
        tally = Tally()

        async def run() -> None:
            http = make_http_client(ca_bundle=None, timeout_s=5.0)
            uploader = Uploader(
                store,
                identity,
                hub_id,
                UploadSettings(url=proxy.url, batch_max_events=BATCH_EVENTS),
                http,
                clock=FastClock(),
            )
            try:
                # Three resets, then a success: the council has handled the resets (their
                # RST reached it before the last request began) when that one is answered.
                for _ in range(4):
                    tally.add(await uploader.upload_once())
            finally:
                await http.aclose()

        with proxy:
            asyncio.run(run())
        store.close()
        assert tally.outcomes == {"retry": 3, "sent": 1}
        assert proxy.stats().faults == {Fault.RESET: 3, Fault.NONE: 1}
        assert council.app.state.unexpected_errors == 0

"""Council ingest over real HTTP, beside a raw bulk insert of the same rows into the same table.

What is measured: signed uploads of 500-event batches (the codec's typical mixed home batch),
from several hubs at once, to the real council app under uvicorn on 127.0.0.1, with signature
verification on, until every batch is acknowledged; events/s = events stored / wall time.
Beside it, in the same run and the same database: the same rows inserted by the engine's
fastest plain path (SQLite: one executemany in one transaction; PostgreSQL: COPY), which is
the ceiling any service on that table could reach. Figures, not assertions.

Why the server runs in a child process: the client (httpx, asyncio) would otherwise share the
GIL with the server and the figure would be half client. On this 2-core machine the child has
one core and the client the other, as a council host's one uvicorn worker would; the child's
own CPU time is reported, so "server-bound" can be checked (cpu_per_wall near 1.0).
The child is a few lines around `uvicorn.Server` rather than `hearth council serve`, so that it
can stop by itself when this process goes away (it reads a pipe from us: EOF = exit), and so
that `--profile` can run the same process under cProfile.

Run alone: `python -m tests.benchmarks.bench_council [--engine sqlite|postgresql]
[--profile]`; `--profile` prints where the server process spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from hub.events import StoredEvent
from hub.identity import HubIdentity
from sync.codec import CONTENT_TYPE, encode_batch
from sync.council.records import COLUMNS, Row, row_for
from sync.council.store import CouncilStore
from sync.protocol import HEALTH_PATH, UPLOAD_PATH
from sync.signing import sign_request
from tests.benchmarks.bench_wire import HEALTH, typical_batch

BATCH = 500
HUBS = 4  # hubs uploading at once; each has one upload in flight, as a real hub does
BATCHES_PER_HUB = 20  # timed; one more per hub warms the connection up first
TARGET_EVENTS_PER_S = 20_000

# The child process: the real app under uvicorn, stopped when our pipe on its stdin closes.
# With a profile path it runs sync endpoints inline (not in anyio's thread pool) so cProfile,
# which sees one thread only, sees every call of the request path.
_SERVER = r"""
import socket, sys, threading
import uvicorn
from sync.council.app import create_app
from sync.council.records import COLUMNS, Row, row_for
from sync.council.store import CouncilStore

url, fd, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket(fileno=fd)  # bound to 127.0.0.1 by the parent: no port race
if profile:
    import cProfile, anyio.to_thread
    async def _inline(func, *args, **kwargs):
        return func(*args)
    anyio.to_thread.run_sync = _inline
    profiler = cProfile.Profile()
store = CouncilStore.open(url)
config = uvicorn.Config(create_app(store), log_level="warning", access_log=False)
server = uvicorn.Server(config)

def _watch():
    sys.stdin.buffer.read()  # EOF: the benchmark closed the pipe or died
    server.should_exit = True

threading.Thread(target=_watch, daemon=True).start()
if profile:
    profiler.enable()
server.run(sockets=[sock])
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
store.close()
"""


@dataclass
class BenchHub:
    hub_id: str
    identity: HubIdentity
    events: list[StoredEvent] = field(default_factory=list)


# -- the council process -----------------------------------------------------------------


@dataclass
class Council:
    url: str
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]

    def cpu_seconds(self) -> float:
        """utime + stime of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def council_process(db_url: str, profile: Path | None = None) -> Iterator[Council]:
    """The council app under uvicorn in a child process on 127.0.0.1, ready when yielded.
    The listening socket is bound here (port 0: the kernel picks a free one) and inherited."""
    root = Path(__file__).resolve().parents[2]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, tempfile.TemporaryFile() as err:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, db_url, str(sock.fileno()), str(profile or "")],
            stdin=subprocess.PIPE,
            stderr=err,  # a file, not a pipe: a chatty server must never block on it
            pass_fds=[sock.fileno()],
            cwd=root,
        )
        sock.close()  # the child holds its own copy
        council = Council(f"http://127.0.0.1:{port}", process, err)
        try:
            _wait_ready(council, timeout_s=30.0)
            yield council
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(council: Council, timeout_s: float) -> None:
    """Poll the health endpoint until it answers (the condition), failing fast if the child
    exits, and giving up after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=council.url, timeout=2.0) as client:
        while True:
            if council.process.poll() is not None:
                council.stderr.seek(0)
                err = council.stderr.read().decode(errors="replace")
                raise RuntimeError(f"the council process exited:\n{err}")
            try:
                if client.get(HEALTH_PATH).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the council at {council.url} did not answer in {timeout_s} s")
            time.sleep(0.05)  # between polls of the condition above, not instead of it


# -- the hubs and their batches ----------------------------------------------------------


def enroll_hubs(store: CouncilStore, keys_dir: Path, count: int, prefix: str) -> list[BenchHub]:
    """Hubs enrolled the way a real one is (a one-time code, then its public key), straight
    through the store: enrollment itself is not what this benchmark measures."""
    hubs = []
    for i in range(count):
        identity = HubIdentity.generate(keys_dir / f"{prefix}{i}")
        code = store.create_code(3600.0, note=f"bench {prefix}{i}")
        hub = store.enroll_hub(code.code, identity.public_key_raw(), f"{prefix}{i}", "bench")
        hubs.append(BenchHub(hub.hub_id, identity))
    return hubs


def give_events(hubs: Sequence[BenchHub], batches: int) -> None:
    """Each hub gets `batches` x BATCH distinct events (its own seqs, as a hub numbers them)."""
    events = typical_batch(BATCH * batches)
    for hub in hubs:
        hub.events = events


def signed_uploads(hub: BenchHub) -> list[tuple[bytes, dict[str, str]]]:
    """Every batch of the hub encoded and signed ahead of time: the client must cost little,
    so that what is timed is the council. Signatures stay valid for the skew window (300 s)."""
    out = []
    for i in range(0, len(hub.events), BATCH):
        body = encode_batch(hub.hub_id, hub.events[i : i + BATCH], HEALTH)
        headers = sign_request(hub.identity, hub.hub_id, "POST", UPLOAD_PATH, body, time.time())
        headers["Content-Type"] = CONTENT_TYPE
        out.append((body, headers))
    return out


async def _measure(
    council: Council,
    warm: dict[str, list[tuple[bytes, dict[str, str]]]],
    timed: dict[str, list[tuple[bytes, dict[str, str]]]],
) -> tuple[int, int, float, float, float]:
    """All hubs at once, each sending its batches one after another on its own connection:
    first one batch each to open the connections, then the timed batches. Returns, for the
    timed part: events new, batches, wall seconds, server and client CPU seconds."""
    limits = httpx.Limits(max_connections=len(timed), max_keepalive_connections=len(timed))
    async with httpx.AsyncClient(base_url=council.url, timeout=60.0, limits=limits) as client:
        totals = [0, 0]

        async def one_hub(batches: list[tuple[bytes, dict[str, str]]]) -> None:
            for body, headers in batches:
                response = await client.post(UPLOAD_PATH, content=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
                totals[0] += int(response.json()["new"])
                totals[1] += 1

        await asyncio.gather(*(one_hub(b) for b in warm.values()))
        totals[:] = [0, 0]
        cpu_before, client_before = council.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(one_hub(b) for b in timed.values()))
        seconds = time.perf_counter() - start
        cpu = council.cpu_seconds() - cpu_before
        client_cpu = time.process_time() - client_before
    return totals[0], totals[1], seconds, cpu, client_cpu


# -- raw bulk inserts of the same rows ---------------------------------------------------


def raw_sqlite(path: Path, rows: list[Row], per_transaction: int) -> float:
    """Seconds to insert `rows` with plain sqlite3, `per_transaction` rows per commit, on the
    council's own pragmas (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        start = time.perf_counter()
        for i in range(0, len(rows), per_transaction):
            conn.execute("BEGIN")
            conn.executemany(sql, rows[i : i + per_transaction])
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def raw_postgres(url: str, rows: list[Row], per_transaction: int) -> float:
    """Seconds to COPY `rows` into the events table, `per_transaction` rows per commit."""
    import psycopg
    import sqlalchemy as sa

    parsed = sa.make_url(url).set(drivername="postgresql")
    with psycopg.connect(parsed.render_as_string(hide_password=False)) as conn:
        start = time.perf_counter()
        for i in range(0, len(rows), per_transaction):
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows[i : i + per_transaction]:
                    copy.write_row(row)
            conn.commit()
        return time.perf_counter() - start


# -- the benchmark -----------------------------------------------------------------------


def _run(db_url: str, engine: str, work: Path, profile: Path | None) -> dict[str, Any]:
    store = CouncilStore.open(db_url)
    try:
        http_hubs = enroll_hubs(store, work / "keys", HUBS, "http")
        raw_hubs = enroll_hubs(store, work / "keys", 2 * HUBS, "raw")
    finally:
        store.close()
    give_events(http_hubs, BATCHES_PER_HUB + 1)
    give_events(raw_hubs, BATCHES_PER_HUB)
    total = HUBS * BATCHES_PER_HUB * BATCH

    # Raw first, into the same table, before the server holds the database: the same rows
    # under other hub ids, once in one transaction and once 500 rows per transaction.
    now = time.time()
    rows = [
        [row_for(hub.hub_id, e.to_record(), now) for hub in group for e in hub.events]
        for group in (raw_hubs[:HUBS], raw_hubs[HUBS:])
    ]
    if engine == "sqlite":
        path = Path(db_url.removeprefix("sqlite:///"))
        raw_one = raw_sqlite(path, rows[0], per_transaction=total)
        raw_batched = raw_sqlite(path, rows[1], per_transaction=BATCH)
    else:
        raw_one = raw_postgres(db_url, rows[0], per_transaction=total)
        raw_batched = raw_postgres(db_url, rows[1], per_transaction=BATCH)

    warm = {h.hub_id: signed_uploads(h)[:1] for h in http_hubs}
    timed = {h.hub_id: signed_uploads(h)[1:] for h in http_hubs}
    with council_process(db_url, profile) as council:
        new, batches, seconds, server_cpu, client_cpu = asyncio.run(_measure(council, warm, timed))
    store = CouncilStore.open(db_url)
    try:
        held = sum(store.count_events(h.hub_id) for h in http_hubs)
    finally:
        store.close()
    if new != total or held != total + HUBS * BATCH:  # a figure for lost events is no figure
        raise RuntimeError(f"the council stored {new} of {total} timed events ({held} held)")
    per_s, raw_per_s, raw_batched_per_s = total / seconds, total / raw_one, total / raw_batched
    return {
        "events": total,
        "batches": batches,
        "hubs_concurrent": HUBS,
        "http_events_per_s": round(per_s),
        "server_cpu_per_wall": round(server_cpu / seconds, 2),
        "server_cpu_us_per_event": round(server_cpu / total * 1e6, 1),
        # What one process could do with a core to itself (CPU-bound, no I/O wait).
        "server_cpu_bound_events_per_s": round(total / server_cpu),
        "client_cpu_per_wall": round(client_cpu / seconds, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on this machine
        "raw_method": ("executemany" if engine == "sqlite" else "COPY") + ", one transaction",
        "raw_events_per_s": round(raw_per_s),
        "ratio_to_raw": round(per_s / raw_per_s, 3),
        "raw_500_per_transaction_per_s": round(raw_batched_per_s),
        "ratio_to_raw_500_per_transaction": round(per_s / raw_batched_per_s, 3),
        "target_events_per_s": f">= {TARGET_EVENTS_PER_S}",
    }


def ingest_sqlite(profile: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hearth-bench-council-") as d:
        return _run(f"sqlite:///{Path(d) / 'council.db'}", "sqlite", Path(d), profile)


def ingest_postgres(profile: Path | None = None) -> dict[str, Any]:
    """The same on a throwaway PostgreSQL server started as the tests start theirs."""
    from tests.postgres import start_postgres, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    server, watchdog = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="hearth-bench-council-") as d:
            return _run(server.url, "postgresql", Path(d), profile)
    finally:
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # the watchdog stops the server and removes its files
        watchdog.wait(timeout=60)


def _print_profile(path: Path, limit: int = 40) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--profile", action="store_true", help="cProfile the server process")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        for engine, bench in (("sqlite", ingest_sqlite), ("postgresql", ingest_postgres)):
            if args.engine not in (engine, "both"):
                continue
            profile = Path(d) / f"{engine}.prof" if args.profile else None
            print(engine, json.dumps(bench(profile), indent=2))
            if profile is not None and profile.exists():
                _print_profile(profile)


if __name__ == "__main__":
    main()

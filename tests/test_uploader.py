"""The uploader against a stand-in council (httpx.MockTransport): batching, acknowledgement,
conflicts, retries, Retry-After, 413, the council's clock, the bandwidth cap, priority,
resume after restart. Nothing sleeps: the uploader runs on a fake clock.

The stand-in verifies signatures with sync.signing and decodes with sync.codec, so what it
accepts is what the real council accepts; tests/test_uploader_council.py runs the same
uploader against the real service over loopback.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.events import Alert, Reading, StoredEvent
from hub.identity import HubIdentity
from hub.store import Store
from hub.store.buffer import META_LAST_SYNC_ERROR
from sync.backoff import Backoff, TokenBucket, honoured_delay, retry_after_s
from sync.codec import CONTENT_TYPE, Batch, decode_batch
from sync.health import HealthReporter
from sync.protocol import (
    CONFIG_PATH,
    HEADER_COUNCIL_TIME,
    UPLOAD_PATH,
    HubConfig,
    UploadAck,
    to_ranges,
)
from sync.signing import HEADER_TIMESTAMP, SignatureError, verify_request
from sync.uploader import (
    ALERT_RETRY_S,
    MAX_REJECTS_PER_ROUND,
    Outcome,
    Uploader,
    UploadSettings,
)
from tests.factories import T0, alert, reading

HUB = "hub-test0000000"
URL = "https://council.test"


# -- fakes shared by the uploader tests ----------------------------------------------------


class FakeClock:
    """Time that moves only when the uploader sleeps. A sleep of `park_at` seconds or more
    never returns (the idle wait of a `run()` under test); `on_sleep` sees every sleep."""

    def __init__(self, wall: float = T0, *, park_at: float = float("inf")) -> None:
        self._wall = wall
        self._mono = 1000.0
        self.park_at = park_at
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None
        self.parked = asyncio.Event()

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds >= self.park_at:
            self.parked.set()
            await asyncio.Future()  # until cancelled
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        for _ in range(5):  # let a wake scheduled by on_sleep land first
            await asyncio.sleep(0)
        self.advance(seconds)


Step = Callable[["FakeCouncil", httpx.Request], httpx.Response]


class FakeCouncil:
    """The council's hub endpoints, as the contract says, behind httpx.MockTransport.

    `script` holds steps that answer the next requests instead (faults); when it is empty
    requests are served normally. `held` is what the council holds: seq -> record.
    """

    def __init__(
        self,
        identity: HubIdentity,
        clock: FakeClock,
        *,
        offset: float = 0.0,
        max_body: int | None = None,
    ) -> None:
        self.key = identity.public_key_b64()
        self.clock = clock
        self.offset = offset
        self.max_body = max_body
        self.held: dict[int, dict[str, Any]] = {}
        self.script: list[Step] = []
        self.requests: list[httpx.Request] = []
        self.batches: list[Batch] = []
        self.on_batch: Callable[[Batch], None] | None = None
        # Refuses a batch for its content (422 with the returned text) when it returns one.
        self.refuse: Callable[[Batch], str | None] | None = None
        self.config_version = 1
        self.max_skew_s = 300

    def now(self) -> float:
        return self.clock.wall() + self.offset

    def answer(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        out = {HEADER_COUNCIL_TIME: f"{self.now():.3f}", **(headers or {})}
        return httpx.Response(status, json=body, headers=out)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)(self, request)
        return self.serve(request)

    def serve(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if self.max_body is not None and len(body) > self.max_body:
            return self.answer(413, {"detail": f"the body is larger than {self.max_body} bytes"})
        try:
            verify_request(
                self.key,
                request.headers,
                request.method,
                request.url.raw_path.decode(),
                body,
                self.now(),
                max_skew_s=self.max_skew_s,
            )
        except SignatureError as exc:
            detail = f"hub signature ({exc.reason.value}): {exc.detail}"
            return self.answer(401, {"detail": detail})
        if request.method == "GET" and request.url.path.endswith(CONFIG_PATH):
            config = HubConfig(config_version=self.config_version, config={"report": {}})
            return self.answer(200, config.model_dump())
        assert request.url.path.endswith(UPLOAD_PATH)
        assert request.headers["content-type"] == CONTENT_TYPE
        batch = decode_batch(body)
        assert batch.hub_id == HUB
        if self.refuse is not None and (why := self.refuse(batch)) is not None:
            return self.answer(422, {"detail": why})
        self.batches.append(batch)
        if self.on_batch is not None:
            self.on_batch(batch)
        held, conflicts, new = [], [], 0
        for event in batch.events:
            record = event.to_record()
            if event.seq not in self.held:
                self.held[event.seq] = record
                new += 1
                held.append(event.seq)
            elif self.held[event.seq] == record:
                held.append(event.seq)
            else:
                conflicts.append(event.seq)
        ack = UploadAck(
            new=new,
            duplicates=len(held) - new,
            held=to_ranges(held),
            conflicts=to_ranges(conflicts),
            high_water=max(self.held, default=0),
            config_version=self.config_version,
        )
        return self.answer(200, ack.model_dump())


def status(code: int, detail: str = "no", headers: dict[str, str] | None = None) -> Step:
    return lambda council, _request: council.answer(code, {"detail": detail}, headers)


def fail_with(exc: Exception) -> Step:
    def step(_council: FakeCouncil, _request: httpx.Request) -> httpx.Response:
        raise exc

    return step


def commit_then_drop(council: FakeCouncil, request: httpx.Request) -> httpx.Response:
    """The council stores the batch, then the answer is lost on the way back."""
    council.serve(request)
    raise httpx.ReadError("connection reset by peer")


def settings(**kw: Any) -> UploadSettings:
    base: dict[str, Any] = {"url": URL, "retry_max_s": 300.0, "sync_interval_s": 60.0}
    return UploadSettings(**{**base, **kw})


def make_uploader(
    store: Store,
    identity: HubIdentity,
    council: FakeCouncil,
    http: httpx.AsyncClient,
    seed: int = 1,
    **kw: Any,
) -> Uploader:
    on_config = kw.pop("on_config_version", None)
    health = kw.pop("health", None)
    return Uploader(
        store,
        identity,
        HUB,
        settings(**kw),
        http,
        health=health,
        clock=council.clock,
        rng=random.Random(seed),
        config_version=1,
        on_config_version=on_config,
    )


def client(council: FakeCouncil) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=council.transport())


def drain_until_caught_up(
    store: Store, identity: HubIdentity, council: FakeCouncil, **kw: Any
) -> None:
    """`hearth sync now` against `council`, with these settings: it must catch up."""

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, **kw)
            assert (await uploader.drain()).ok

    asyncio.run(scenario())


def alert_arrival(council: FakeCouncil) -> asyncio.Event:
    """Set, on the running loop, once the council has received a batch with an alert."""
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def note_alert(batch: Batch) -> None:
        if any(isinstance(e.event, Alert) for e in batch.events):
            loop.call_soon(arrived.set)

    council.on_batch = note_alert
    return arrived


async def cancelled(task: asyncio.Task[None]) -> None:
    """Stop a `run()` task: it must end by cancellation, never by an error of its own."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def records(store: Store) -> dict[int, dict[str, Any]]:
    return {e.seq: e.to_record() for e in store.events(limit=1_000_000)}


def as_bodies(held: dict[int, dict[str, Any]]) -> list[str]:
    """Records without their seq, sorted: the events themselves, whatever their numbers."""
    out = []
    for record in held.values():
        body = {k: v for k, v in record.items() if k != "seq"}
        out.append(json.dumps(body, sort_keys=True))
    return sorted(out)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> HubIdentity:
    return HubIdentity.generate(tmp_path_factory.mktemp("key"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def readings(n: int, start: float = 0.0, sensors: int = 3) -> list[Reading]:
    rng = random.Random(n)
    return [
        reading(start + i, sensor=f"s{i % sensors}", value=round(rng.uniform(15, 25), 2))
        for i in range(n)
    ]


# -- backoff, Retry-After, bandwidth: the arithmetic ----------------------------------------


def test_backoff_delays_stay_under_the_exponential_ceiling_and_the_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0, rng=random.Random(3))
    for n in range(12):
        ceiling = min(60.0, 2.0**n)
        assert backoff.ceiling() == ceiling
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.failures == 12
    backoff.reset()
    assert backoff.ceiling() == 1.0
    assert Backoff(cap_s=300.0, failures=100_000).ceiling() == 300.0  # no overflow


def test_full_jitter_is_uniform_over_the_whole_window() -> None:
    rng = random.Random(42)
    draws = [Backoff(1.0, 300.0, rng, failures=4).next_delay() for _ in range(20_000)]
    assert all(0.0 <= d <= 16.0 for d in draws)
    assert sum(draws) / len(draws) == pytest.approx(8.0, abs=0.15)
    deciles = [0] * 10
    for d in draws:
        deciles[min(9, int(d / 1.6))] += 1
    assert all(1800 < count < 2200 for count in deciles), deciles  # ~2000 each
    assert min(draws) < 0.05  # full jitter reaches down to zero, not "ceiling/2 + jitter"


def test_a_refusal_waits_in_the_upper_half_of_the_cap() -> None:
    backoff = Backoff(1.0, 300.0, random.Random(1))
    waits = [backoff.at_cap() for _ in range(1000)]
    assert all(150.0 <= w <= 300.0 for w in waits)
    assert backoff.failures == 1000


def test_retry_after_in_both_forms() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(" 7 ", now) == 7.0
    date = email.utils.formatdate(now + 90, usegmt=True)  # "Tue, 14 Nov 2023 22:14:50 GMT"
    assert retry_after_s(date, now) == pytest.approx(90.0, abs=1.0)
    assert retry_after_s(email.utils.formatdate(now - 500, usegmt=True), now) == 0.0
    for junk in (None, "", "soon", "-5", "1.5", "Tue, 99 Nov 2023"):
        assert retry_after_s(junk, now) is None


def test_retry_after_is_a_floor_with_a_spread_and_never_beyond_the_cap() -> None:
    rng = random.Random(0)
    assert honoured_delay(None, 3.0, 300.0, rng) == 3.0
    spread = [honoured_delay(30.0, 2.0, 300.0, rng) for _ in range(200)]
    assert all(30.0 <= d <= 33.0 for d in spread) and max(spread) > 32.0
    assert honoured_delay(30.0, 100.0, 300.0, rng) == 100.0  # our own backoff is longer
    assert honoured_delay(86_400.0, 1.0, 300.0, rng) == 300.0  # "tomorrow" is capped


def test_token_bucket_arithmetic() -> None:
    bucket = TokenBucket(rate=1000.0, burst=1000.0, now=0.0)
    assert bucket.wait_for(500, 0.0) == 0.0
    bucket.take(500, 0.0)
    assert bucket.wait_for(800, 0.0) == pytest.approx(0.3)
    bucket.take(800, 0.3)  # 0 left
    assert bucket.wait_for(3000, 0.3) == pytest.approx(1.0)  # bigger than the bucket: a full one
    bucket.take(3000, 1.3)  # in debt by 2000
    assert bucket.wait_for(100, 1.3) == pytest.approx(2.1)
    assert bucket.wait_for(100, 10.0) == 0.0  # refilled, capped at the burst
    assert bucket.wait_for(2000, 10.0) == 0.0


def test_token_bucket_holds_the_long_run_rate() -> None:
    bucket = TokenBucket(rate=2048.0, burst=2048.0, now=0.0)
    now, sizes = 0.0, [random.Random(i).randint(500, 9000) for i in range(200)]
    for size in sizes:
        now += bucket.wait_for(size, now)
        bucket.take(size, now)
    assert (sum(sizes) - 2048 - sizes[-1]) / 2048 <= now <= sum(sizes) / 2048


# -- rounds against the stand-in -----------------------------------------------------------


def test_uploads_everything_once_alerts_first_and_marks_it_synced(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(250))
    store.commit([alert(300.0, check="leak", room="kitchen")])
    council = FakeCouncil(identity, clock)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, batch_max_events=100)
            report = await uploader.drain()
            assert report.ok and report.events == 251 and report.batches == 3
            assert report.remaining == 0 and report.requests == 3
            st = uploader.status()
            assert st.events_sent == 251 and st.batches_sent == 3
            assert st.bytes_sent == report.bytes == sum(len(r.content) for r in council.requests)
            assert st.last_success_at == clock.wall() and st.consecutive_failures == 0

    asyncio.run(scenario())
    assert council.held == records(store)
    assert isinstance(council.batches[0].events[0].event, Alert)
    assert [len(b.events) for b in council.batches] == [100, 100, 51]
    assert store.queue_depth() == 0 and store.get_meta("last_sync_at") is not None
    health = council.batches[0].health
    assert health == {}  # no reporter given: an empty (valid) report


def test_an_alert_committed_during_a_backlog_goes_in_the_very_next_request(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(3000))
    council = FakeCouncil(identity, clock)

    def raise_alert_during_third(batch: Batch) -> None:
        if len(council.batches) == 3:
            store.commit([alert(5000.0, check="pull_cord")])

    council.on_batch = raise_alert_during_third

    drain_until_caught_up(store, identity, council, batch_max_events=200)
    kinds = [[type(e.event).__name__ for e in b.events] for b in council.batches]
    assert all("Alert" not in k for k in kinds[:3])
    assert kinds[3][0] == "Alert"  # request 4, ahead of the 2400 readings still waiting
    assert len(council.held) == 3001


def test_an_alert_raised_while_waiting_for_bandwidth_joins_that_request(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(400))
    council = FakeCouncil(identity, clock)
    woken: list[Uploader] = []

    def alert_on_first_wait(_seconds: float) -> None:
        if not woken:
            store.commit([alert(9000.0, check="leak")])
            uploader = next(iter(holder))
            woken.append(uploader)
            uploader.wake()

    holder: list[Uploader] = []
    clock.on_sleep = alert_on_first_wait

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, batch_max_events=100, bandwidth_kib_s=0.5
            )
            holder.append(uploader)
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    assert woken, "the bandwidth cap never made the uploader wait"
    first_waited = council.batches[1]  # the first request went at once (full bucket)
    assert isinstance(first_waited.events[0].event, Alert)


def test_bandwidth_cap_paces_request_bytes(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(2000, sensors=7))
    council = FakeCouncil(identity, clock)

    drain_until_caught_up(store, identity, council, batch_max_events=100, bandwidth_kib_s=0.1)
    sizes = [len(r.content) for r in council.requests]
    total, rate = sum(sizes), 102.4
    waited = sum(clock.sleeps)
    assert len(sizes) == 20 and total > 10 * rate  # the cap had something to do
    assert (total - rate - sizes[-1]) / rate <= waited <= total / rate


def test_conflicts_are_renumbered_above_high_water_and_sent_again(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    """A hub whose SD card lost its newest commits hands out seqs 1..5 again; the council
    holds other events under them. Nothing may be lost and nothing overwritten."""
    council = FakeCouncil(identity, clock)
    earlier = [StoredEvent(seq, reading(-100.0 + seq, value=99.0)) for seq in range(1, 21)]
    council.held = {e.seq: e.to_record() for e in earlier}
    store.commit(readings(8))  # seqs 1..8: all clash with what the council holds

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            first = await uploader.upload_once()
            assert first.outcome is Outcome.SENT and first.renumbered == 8 and first.held == 0
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    assert sorted(council.held) == list(range(1, 29))  # 1..20 kept, ours as 21..28
    assert all(council.held[s] == earlier[s - 1].to_record() for s in range(1, 21))
    assert as_bodies({s: council.held[s] for s in range(21, 29)}) == as_bodies(records(store))
    assert store.commit([reading(50.0)]) == [29]


def test_high_water_above_the_hubs_numbers_raises_its_floor(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    council = FakeCouncil(identity, clock)
    council.held = {500: StoredEvent(500, reading(-5.0)).to_record()}
    store.commit(readings(3))

    async def scenario() -> None:
        async with client(council) as http:
            assert (await make_uploader(store, identity, council, http).drain()).ok

    asyncio.run(scenario())
    assert store.commit([reading(60.0)]) == [501]  # never a number the council holds


def test_a_lost_answer_means_a_resend_and_no_duplicate(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(150))
    council = FakeCouncil(identity, clock)
    council.script = [commit_then_drop]

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, batch_max_events=100)
            lost = await uploader.upload_once()
            assert lost.outcome is Outcome.RETRY and "ReadError" in (lost.error or "")
            assert store.queue_depth() == 150  # not acknowledged: nothing marked
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    assert council.held == records(store)
    sent = [e.seq for b in council.batches for e in b.events]
    assert len(sent) == 250 and len(set(sent)) == 150  # the first 100 went twice, stored once


def test_resumes_after_a_restart_exactly_where_the_acks_left_it(
    tmp_path: Path, identity: HubIdentity, clock: FakeClock
) -> None:
    db = tmp_path / "hub.db"
    first = Store.open(db)
    first.commit(readings(1000))
    council = FakeCouncil(identity, clock)

    async def upload(store: Store, rounds: int | None) -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, batch_max_events=100)
            await uploader.drain(max_rounds=rounds)

    asyncio.run(upload(first, 3))
    first.close()  # the hub restarts
    acked_before = sorted(council.held)
    assert acked_before == list(range(1, 301))
    second = Store.open(db)
    asyncio.run(upload(second, None))
    sent = [e.seq for b in council.batches for e in b.events]
    assert sent == list(range(1, 1001))  # in order, each once: no re-send, no gap
    assert council.held == records(second)
    second.close()


def test_413_shrinks_the_batch_until_the_council_takes_it(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(1500, sensors=9))
    council = FakeCouncil(identity, clock, max_body=600)

    drain_until_caught_up(store, identity, council, batch_max_events=500)
    sizes = [len(r.content) for r in council.requests]
    refused = [s for s in sizes if s > 600]
    assert 1 <= len(refused) <= 3  # learned once or twice, then every request fits
    assert sizes.index(max(refused)) == 0
    assert all(s <= 600 for s in sizes[len(refused) :])
    assert council.held == records(store)


def test_batches_are_cut_to_the_byte_bound_before_sending(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    rng = random.Random(7)
    noisy = [
        alert(float(i), check=f"c{i}", room="".join(rng.choices("abcdefghij", k=60)))
        for i in range(300)
    ]
    store.commit(noisy)
    council = FakeCouncil(identity, clock)

    drain_until_caught_up(store, identity, council, batch_max_kib=4)
    sizes = [len(r.content) for r in council.requests]
    assert len(sizes) > 3 and all(s <= 4096 for s in sizes)
    assert max(sizes) > 2048  # cut close to the bound, not far below it
    assert len(council.held) == 300


def test_an_event_too_large_for_the_council_is_set_aside_and_the_rest_goes(
    store: Store, identity: HubIdentity, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(1)
    huge = alert(1.0, room="".join(rng.choices("abcdefghijklmnop", k=30_000)))
    store.commit([huge, *readings(5)])
    council = FakeCouncil(identity, clock, max_body=8000)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            result = await uploader.upload_once()
            assert result.outcome is Outcome.SENT and result.rejected == 1
            assert (await uploader.drain()).ok
            assert uploader.status().events_rejected == 1

    with caplog.at_level(logging.DEBUG, logger="sync.uploader"):
        asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "[1]" in errors[0] and "413" in errors[0]
    assert sorted(council.held)[:5] == [2, 3, 4, 5, 6]  # the readings, then the report
    report = council.held[7]
    assert report["kind"] == "system" and report["system"] == "upload_rejected"
    assert report["details"]["seqs"] == [1] and "413" in report["details"]["reason"]
    assert store.queue_depth() == 0 and store.status().rejected == 1  # kept, not sent


@pytest.mark.parametrize(
    ("step", "outcome"),
    [
        (fail_with(httpx.ConnectError("connection refused")), Outcome.RETRY),
        (fail_with(httpx.ReadTimeout("timed out")), Outcome.RETRY),
        (fail_with(httpx.RemoteProtocolError("peer closed")), Outcome.RETRY),
        (status(500, "internal error"), Outcome.RETRY),
        (status(502, "bad gateway"), Outcome.RETRY),
        (status(503, "busy"), Outcome.RETRY),
        (status(429, "slow down"), Outcome.RETRY),
        (status(400, "bad"), Outcome.REFUSED),
        (status(401, "unknown hub 'hub-x': enroll it first"), Outcome.REFUSED),
        (status(403, "hubs write only their own data"), Outcome.REFUSED),
        (status(415, "Content-Type must be ..."), Outcome.REFUSED),
        (status(422, "batch: events[3].seq: 0 is not positive"), Outcome.SENT),
    ],
)
def test_which_failures_are_retried_soon(
    store: Store, identity: HubIdentity, clock: FakeClock, step: Step, outcome: Outcome
) -> None:
    store.commit(readings(5))
    council = FakeCouncil(identity, clock)
    council.script = [step]

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            result = await uploader.upload_once()
            if outcome is Outcome.SENT:  # a content refusal: the batch is cut, nothing lost
                assert result.held == 5 and result.rejected == 0
                return
            assert result.outcome is outcome and result.requests == 1
            if outcome is Outcome.RETRY:
                assert 0.0 <= result.delay_s <= 1.0  # first failure: window of base 1 s
            else:
                assert 150.0 <= result.delay_s <= 300.0
            st = uploader.status()
            assert st.next_attempt_at == clock.wall() + result.delay_s
            assert st.last_error == result.error and st.consecutive_failures == 1
            assert (await uploader.drain()).ok  # and it recovers when the fault is gone
            assert uploader.status().consecutive_failures == 0

    asyncio.run(scenario())
    assert store.queue_depth() == 0 and store.status().rejected == 0
    assert as_bodies(council.held) == as_bodies(records(store))


def test_a_refused_batch_is_logged_once_not_every_retry(
    store: Store, identity: HubIdentity, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store.commit(readings(5))
    council = FakeCouncil(identity, clock)
    council.script = [status(415, "Content-Type must be application/vnd.hearth.batch")] * 4

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            for _ in range(4):
                assert (await uploader.upload_once()).outcome is Outcome.REFUSED

    with caplog.at_level(logging.DEBUG, logger="sync.uploader"):
        asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "415" in errors[0] and "seqs 1..5" in errors[0]
    assert "415" in (store.get_meta(META_LAST_SYNC_ERROR) or "")


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured_on_429_and_503(
    store: Store, identity: HubIdentity, clock: FakeClock, form: str
) -> None:
    store.commit(readings(5))
    council = FakeCouncil(identity, clock)
    value = "40" if form == "seconds" else email.utils.formatdate(clock.wall() + 40, usegmt=True)
    council.script = [
        status(429, "slow down", {"Retry-After": value}),
        status(503, "maintenance", {"Retry-After": "86400"}),
    ]

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, retry_max_s=120.0)
            first = await uploader.upload_once()
            assert first.outcome is Outcome.RETRY and 39.0 <= first.delay_s <= 44.0
            second = await uploader.upload_once()
            assert second.delay_s == 120.0  # a day is capped at retry_max_s

    asyncio.run(scenario())


def test_a_stale_timestamp_is_retried_at_once_with_the_councils_clock(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    """A Pi after a power cut: its clock is an hour behind; the first answer (a 401)
    carries the council's time and the retry is signed with it."""
    store.commit(readings(5))
    council = FakeCouncil(identity, clock, offset=3600.0)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            result = await uploader.upload_once()
            assert result.outcome is Outcome.SENT and result.requests == 2
            assert uploader.status().clock_offset_s == pytest.approx(3600.0)
            store.commit(readings(2, start=100.0))
            assert (await uploader.upload_once()).requests == 1  # the offset is kept

    asyncio.run(scenario())
    stamps = [int(r.headers[HEADER_TIMESTAMP]) for r in council.requests]
    assert stamps[0] == int(clock.wall()) and stamps[1] == int(clock.wall() + 3600)
    assert len(council.held) == 7


def test_the_stale_timestamp_retry_happens_once_only(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(5))
    council = FakeCouncil(identity, clock, offset=3600.0)
    council.max_skew_s = -1  # refuses every timestamp, however corrected

    async def scenario() -> None:
        async with client(council) as http:
            result = await make_uploader(store, identity, council, http).upload_once()
            assert result.outcome is Outcome.REFUSED and result.requests == 2
            assert "timestamp" in (result.error or "")

    asyncio.run(scenario())


def test_config_version_is_noticed_once_and_fetch_config_is_signed(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(30))
    council = FakeCouncil(identity, clock)
    council.config_version = 4
    seen: list[int] = []

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, batch_max_events=10, on_config_version=seen.append
            )
            assert (await uploader.drain()).ok
            assert uploader.council_config_version == 4
            config = await uploader.fetch_config()
            assert config.config_version == 4 and config.config == {"report": {}}

    asyncio.run(scenario())
    assert seen == [4]  # three acks said 4; the listener heard it once
    get = council.requests[-1]
    assert get.method == "GET" and get.url.path == CONFIG_PATH


def test_run_waits_idle_until_woken_by_an_alert_from_another_thread(
    store: Store, identity: HubIdentity
) -> None:
    clock = FakeClock(park_at=1000.0)  # the idle wait (sync_interval_s) never ends by itself
    store.commit(readings(120))
    council = FakeCouncil(identity, clock)

    async def scenario() -> None:
        arrived = alert_arrival(council)
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, batch_max_events=50, sync_interval_s=1000.0
            )
            task = asyncio.create_task(uploader.run())
            await asyncio.wait_for(clock.parked.wait(), 10)  # backlog sent, now idle
            assert len(council.held) == 120

            def from_the_committer_thread() -> None:
                store.commit([alert(500.0, check="leak")])
                uploader.wake()

            await asyncio.to_thread(from_the_committer_thread)
            await asyncio.wait_for(arrived.wait(), 10)
            await cancelled(task)

    asyncio.run(scenario())
    assert len(council.held) == 121


def test_run_backs_off_after_failures_and_keeps_going(store: Store, identity: HubIdentity) -> None:
    clock = FakeClock(park_at=1000.0)
    store.commit(readings(10))
    council = FakeCouncil(identity, clock)
    council.script = [fail_with(httpx.ConnectError("down"))] * 6

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, sync_interval_s=1000.0, retry_max_s=30.0
            )
            task = asyncio.create_task(uploader.run())
            await asyncio.wait_for(clock.parked.wait(), 10)
            await cancelled(task)

    asyncio.run(scenario())
    backoffs = clock.sleeps[:6]
    assert [s <= min(30.0, 2.0**n) for n, s in enumerate(backoffs)] == [True] * 6
    assert len(council.held) == 10


def test_an_alert_during_a_long_backoff_is_tried_within_seconds(
    store: Store, identity: HubIdentity
) -> None:
    """The council was unreachable and the uploader is sitting out a long backoff: an alert
    committed now gets one jittered try within ALERT_RETRY_S, not at the end of the wait."""
    clock = FakeClock(park_at=ALERT_RETRY_S)  # any wait this long never ends by itself
    store.commit(readings(10))
    council = FakeCouncil(identity, clock)
    council.script = [fail_with(httpx.ConnectError("down"))]

    async def scenario() -> None:
        arrived = alert_arrival(council)
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, retry_base_s=600.0, retry_max_s=600.0
            )
            task = asyncio.create_task(uploader.run())
            await asyncio.wait_for(clock.parked.wait(), 10)  # in the backoff after the failure
            assert uploader.status().consecutive_failures == 1
            assert (uploader.status().next_attempt_at or 0) - clock.wall() > ALERT_RETRY_S
            store.commit([alert(500.0, check="pull_cord")])
            uploader.wake()
            await asyncio.wait_for(arrived.wait(), 10)
            await cancelled(task)

    asyncio.run(scenario())
    assert clock.sleeps and all(s < ALERT_RETRY_S for s in clock.sleeps)


def test_only_a_failure_without_retry_after_lets_an_alert_retry_sooner(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    """Retry-After is the council shedding load: an alert does not jump it. A connection
    failure or a bare 500 carries no such request."""
    store.commit(readings(3))
    council = FakeCouncil(identity, clock)
    council.script = [
        lambda _c, _r: httpx.Response(503, headers={"Retry-After": "120"}, json={"detail": "busy"}),
        fail_with(httpx.ConnectError("down")),
        lambda _c, _r: httpx.Response(500, json={"detail": "oops"}),
    ]

    async def scenario() -> list[bool]:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            results = [await uploader.upload_once() for _ in range(3)]
        assert [r.outcome for r in results] == [Outcome.RETRY] * 3
        return [r.alert_may_retry_sooner for r in results]

    assert asyncio.run(scenario()) == [False, True, True]


def test_an_unexpected_error_in_a_round_does_not_stop_the_uploader(
    store: Store, identity: HubIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(park_at=1000.0)
    store.commit(readings(4))
    council = FakeCouncil(identity, clock)
    calls = {"n": 0}
    real_next_batch = store.next_batch

    def flaky_next_batch(limit: int = 500, **options: bool) -> list[StoredEvent]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return real_next_batch(limit, **options)

    monkeypatch.setattr(store, "next_batch", flaky_next_batch)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, sync_interval_s=1000.0)
            task = asyncio.create_task(uploader.run())
            await asyncio.wait_for(clock.parked.wait(), 10)
            await cancelled(task)
            assert "a bug" in (uploader.status().last_error or "")

    asyncio.run(scenario())
    assert len(council.held) == 4


def test_status_snapshot_as_dict_has_every_field(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    council = FakeCouncil(identity, clock)

    async def scenario() -> dict[str, Any]:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            assert (await uploader.upload_once()).outcome is Outcome.EMPTY
            return uploader.status().as_dict()

    snapshot = asyncio.run(scenario())
    assert set(snapshot) == {
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "consecutive_failures",
        "next_attempt_at",
        "clock_offset_s",
        "events_sent",
        "batches_sent",
        "events_rejected",
        "bytes_sent",
        "council_config_version",
    }
    assert snapshot["last_attempt_at"] == clock.wall() and snapshot["events_sent"] == 0
    assert not council.requests  # an empty outbox sends nothing


# -- events the council can never accept -----------------------------------------------------


def refuse_value(bad: float) -> Callable[[Batch], str | None]:
    def check(batch: Batch) -> str | None:
        for e in batch.events:
            if isinstance(e.event, Reading) and e.event.value == bad:
                return f"events[{e.seq}]: value {bad} is not acceptable"
        return None

    return check


def test_a_poison_event_is_isolated_alerts_first_and_nothing_else_is_lost(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit([reading(0.0, value=666.0), *readings(40, start=1.0)])
    store.commit([alert(50.0)])
    council = FakeCouncil(identity, clock)
    council.refuse = refuse_value(666.0)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            first = await uploader.upload_once()
            assert first.outcome is Outcome.SENT and first.rejected == 1 and first.held == 41
            assert first.requests <= 2 + 2 * 6  # a bisection, not one request per event
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    accepted = [[e.event for e in b.events] for b in council.batches]
    assert all(isinstance(e, Alert) for e in accepted[0])  # the alert, alone and first
    assert 1 not in council.held
    assert sorted(council.held) == list(range(2, 44))  # 2..42 ours, 43 the report
    assert council.held[43]["system"] == "upload_rejected"
    assert council.held[43]["details"]["seqs"] == [1]
    assert "666" in council.held[43]["details"]["reason"]
    assert store.status().rejected == 1 and store.queue_depth() == 0
    assert records(store)[1]["value"] == 666.0  # kept for diagnosis


def test_an_event_the_hub_cannot_encode_is_set_aside_without_a_request(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    """A NaN comes back from SQLite as NULL: encoding that reading fails every time."""
    store.commit([reading(0.0, value=float("nan")), *readings(3, start=1.0), alert(9.0)])
    council = FakeCouncil(identity, clock)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            first = await uploader.upload_once()
            assert first.outcome is Outcome.SENT and first.rejected == 1
            assert first.requests == 1 and first.held == 4
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    assert sorted(council.held) == [2, 3, 4, 5, 6]
    assert council.held[6]["details"]["seqs"] == [1]
    assert "cannot encode" in council.held[6]["details"]["reason"]


def test_a_refused_health_report_sets_no_event_aside(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(10))
    council = FakeCouncil(identity, clock)
    council.refuse = lambda b: "health.uptime_s: expected a number" if b.health else None
    reporter = HealthReporter(data_dir=store.path.parent)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            uploader._health = reporter
            result = await uploader.upload_once()
            assert result.outcome is Outcome.SENT and result.rejected == 0 and result.held == 10

    asyncio.run(scenario())
    assert store.status().rejected == 0 and sorted(council.held) == list(range(1, 11))


def test_a_council_refusing_everything_does_not_empty_the_outbox(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(100))
    council = FakeCouncil(identity, clock)
    council.refuse = lambda _b: "this council refuses everything"

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            for _ in range(4):  # round after round: a circuit, not a slow drain
                result = await uploader.upload_once()
                assert result.outcome is Outcome.REFUSED
                assert "accepted no other event" in (result.error or "")

    asyncio.run(scenario())
    # Nothing is set aside while the council accepts nothing at all: it is the council (or
    # the wire) that is wrong, and every event waits for it to be fixed.
    assert store.status().rejected == 0
    assert store.queue_depth() == 100


def test_more_refused_events_than_the_cap_in_one_round_sets_none_aside(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(40))
    council = FakeCouncil(identity, clock)
    # Every event with an even seq is refused: 20 "bad" events among 40.
    council.refuse = lambda batch: "even" if any(e.seq % 2 == 0 for e in batch.events) else None

    async def scenario() -> None:
        async with client(council) as http:
            result = await make_uploader(store, identity, council, http).upload_once()
            assert result.outcome is Outcome.REFUSED and "so many" in (result.error or "")

    asyncio.run(scenario())
    assert store.status().rejected == 0
    assert len(council.held) == 40 - 20 > MAX_REJECTS_PER_ROUND


def test_a_lone_event_whose_health_report_is_refused_is_sent_without_it(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    """The common case on an idle hub: one alert plus the health report. A council that
    refuses the report must still get the alert, and nothing is set aside."""
    store.commit([alert(1.0, check="pull_cord")])
    council = FakeCouncil(identity, clock)
    council.refuse = lambda batch: "bad health" if batch.health else None

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(
                store, identity, council, http, health=HealthReporter(Path("."))
            )
            assert (await uploader.upload_once()).outcome is Outcome.SENT

    asyncio.run(scenario())
    assert store.status().rejected == 0 and len(council.held) == 1


@pytest.mark.parametrize(
    "forge",
    [
        {"high_water": 2**63 - 1},
        {"high_water": 2**40},
        {"held": [(0, 2**62)], "high_water": 2**63 - 1},
    ],
)
def test_an_absurd_acknowledgement_is_ignored(
    store: Store, identity: HubIdentity, clock: FakeClock, forge: dict[str, Any]
) -> None:
    """A forged answer must neither mark events synced nor push the seq floor out of range."""
    store.commit(readings(5))

    def forged(council: FakeCouncil, request: httpx.Request) -> httpx.Response:
        council.serve(request)
        ack = {"new": 5, "duplicates": 0, "held": [(1, 5)], "conflicts": [], "config_version": 1}
        return council.answer(200, {**ack, **forge})

    council = FakeCouncil(identity, clock)
    council.script = [forged]

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http)
            result = await uploader.upload_once()
            assert result.outcome is Outcome.RETRY and "ignored" in (result.error or "")
            assert store.queue_depth() == 5
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    assert store.commit([reading(60.0)]) == [6]


def test_held_ranges_count_only_the_batchs_own_seqs(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(5))
    council = FakeCouncil(identity, clock)

    def wide(council: FakeCouncil, request: httpx.Request) -> httpx.Response:
        council.serve(request)
        ack = {"new": 3, "duplicates": 0, "held": [(0, 3), (10**15, 10**18)], "conflicts": []}
        return council.answer(200, {**ack, "high_water": 5, "config_version": 1})

    council.script = [wide]
    held_now: list[int] = []

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, batch_max_events=3)
            result = await uploader.upload_once()
            assert result.outcome is Outcome.SENT and result.held == 3
            held_now.append(store.queue_depth())

    asyncio.run(scenario())
    assert held_now == [2]


def test_the_signed_target_is_the_path_sent_behind_an_odd_prefix(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(3))
    council = FakeCouncil(identity, clock)

    drain_until_caught_up(store, identity, council, url="https://council.test/hearth council/é")
    assert council.requests[0].url.raw_path == b"/hearth%20council/%C3%A9/v1/upload"
    assert sorted(council.held) == [1, 2, 3]


def test_an_alert_is_not_held_back_by_the_bandwidth_debt(
    store: Store, identity: HubIdentity, clock: FakeClock
) -> None:
    store.commit(readings(400, sensors=7))
    council = FakeCouncil(identity, clock)

    async def scenario() -> None:
        async with client(council) as http:
            uploader = make_uploader(store, identity, council, http, bandwidth_kib_s=0.1)
            assert (await uploader.upload_once()).outcome is Outcome.SENT  # into debt
            store.commit([alert(99.0)])
            slept = len(clock.sleeps)
            assert (await uploader.upload_once()).outcome is Outcome.SENT
            assert clock.sleeps[slept:] == []  # went at once

    asyncio.run(scenario())
    assert isinstance(council.batches[1].events[0].event, Alert)


def test_retry_after_with_non_ascii_digits_is_unreadable_not_a_crash() -> None:
    assert retry_after_s("\u00b2", 0.0) is None
    assert retry_after_s("\u0663", 0.0) is None  # Arabic-Indic three
    assert retry_after_s(" 7 ", 0.0) == 7.0

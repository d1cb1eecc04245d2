"""The hub's uploader: ships what the store has not had acknowledged, alerts first.

State lives in the store, not here: an event is unsynced until the council's answer lists it
as held, and only then is it marked synced. So a restart, a kill or a lost answer costs at
most a re-send, which the council recognises (idempotent on hub id and sequence), and the
uploader resumes exactly where the acknowledgements left it.

One round (`upload_once`): the next batch by priority (store.next_batch: alerts, then system
events, then readings), cut to the byte bound, encoded and compressed (sync.codec), paced by
the bandwidth cap, signed and posted; then the answer is applied: held -> mark_synced,
conflicts -> renumber above the council's high water (sent again in the next round),
high_water -> the store's sequence floor. `run` loops rounds forever inside `hearth run`;
`drain` loops until the outbox is empty or a round fails, for `hearth sync now`. Store calls
run in a worker thread, so the event loop never waits on an fsync.

Waiting: after a success the next round starts at once while a backlog remains; an empty
outbox waits `sync_interval_s` or until `wake()` (an alert was committed). After a failure the
wait is full-jitter exponential backoff capped at `retry_max_s`, with Retry-After honoured on
429/503 as a floor (never beyond the cap). An alert committed during a backoff gets one
jittered try within ALERT_RETRY_S instead of waiting out the cap, unless the council asked
for the wait (Retry-After): it is shedding load, and alerts are too rare to need more.
A refusal of the batch's content (422, or 413 for a single event) or an event the hub cannot
encode would block the outbox for ever, alerts included, as every batch starts at its head:
the batch's alerts are sent alone, the rest is cut in halves until the offending event is
alone, and that event is set aside (Store.reject: kept, never sent again, reported to the
council by an upload_rejected system event). Transient failures (network, 5xx, 429) never
set anything aside. A refusal of the request itself (400/401/403/415) cannot be fixed by
retrying soon: it is logged loudly once per batch, waits the cap, and shows in the status.
An acknowledgement is believed only within reason: seqs outside the batch are ignored and a
high water far above the hub's own numbers is refused (a forged answer must not wedge it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from hub.events import Alert, StoredEvent
from hub.store import Store, StoreWriteError, clockfix
from hub.store.buffer import META_COUNCIL_FEATURES, META_LAST_SYNC_ERROR, META_LAST_SYNC_ERROR_AT
from sync.backoff import Backoff, TokenBucket, honoured_delay, retry_after_s
from sync.client import (
    CouncilClient,
    CouncilError,
    UploadClock,
    describe_transport_error,
    response_detail,
)
from sync.codec import CONTENT_TYPE, encode_batch
from sync.health import HealthReporter
from sync.protocol import (
    CONFIG_PATH,
    FEATURE_CLOCK_CORRECTED,
    MAX_BATCH_EVENTS,
    MAX_UPLOAD_BYTES,
    UPLOAD_PATH,
    HubConfig,
    UploadAck,
    parse_features,
)
from sync.signing import Signer

if TYPE_CHECKING:
    from hub.config import HubConfig as HubConfigFile

log = logging.getLogger(__name__)

# After a failure, an alert committed during the backoff is tried again within this many
# seconds (jittered) instead of waiting out up to retry_max_s.
ALERT_RETRY_S = 10.0
# An acknowledgement whose high water is further than this above the hub's last sequence
# number is not believed (see _apply_ack); SQLite's integers end at SQLITE_MAX_SEQ.
MAX_HIGH_WATER_AHEAD = 2**32
SQLITE_MAX_SEQ = 2**63 - 1
# At most this many events are set aside in one round: more suggests the council refuses
# everything (a version mismatch, say), and the uploader waits instead of emptying the outbox.
# Events are only ever set aside in a round in which the council accepted others.
MAX_REJECTS_PER_ROUND = 8


@dataclass(frozen=True)
class UploadSettings:
    """The [council] section, as the uploader uses it."""

    url: str
    ca_bundle: Path | None = None
    sync_interval_s: float = 60.0
    batch_max_events: int = 500
    batch_max_kib: int = 256
    retry_max_s: float = 300.0
    retry_base_s: float = 1.0
    timeout_s: float = 30.0
    bandwidth_kib_s: float | None = None
    burst_s: float = 1.0  # the bandwidth bucket holds this many seconds' worth

    @classmethod
    def from_config(cls, config: HubConfigFile) -> UploadSettings:
        council = config.council
        if council.url is None:
            raise ValueError("no [council] url in the config: enroll the hub first (hearth enroll)")
        return cls(
            url=council.url,
            ca_bundle=council.ca_bundle,
            sync_interval_s=council.sync_interval_s,
            batch_max_events=council.batch_max_events,
            batch_max_kib=council.batch_max_kib,
            retry_max_s=council.retry_max_s,
            timeout_s=council.timeout_s,
            bandwidth_kib_s=council.bandwidth_kib_s,
        )

    @property
    def max_body_bytes(self) -> int:
        return min(self.batch_max_kib * 1024, MAX_UPLOAD_BYTES)


class Outcome(StrEnum):
    SENT = "sent"  # the council answered with an acknowledgement
    EMPTY = "empty"  # nothing to send
    RETRY = "retry"  # a fault that retrying fixes (network, 5xx, 429): backoff
    REFUSED = "refused"  # the council refused our request: waiting the cap, see last_error


@dataclass(frozen=True)
class RoundResult:
    outcome: Outcome
    events: int = 0  # events in the batch that was answered
    held: int = 0  # of those, now held by the council (marked synced)
    new: int = 0  # stored by this upload (the rest were duplicates of earlier sends)
    renumbered: int = 0  # conflicts moved to fresh sequence numbers, to be sent again
    rejected: int = 0  # events the council refused for their content, set aside (Store.reject)
    bytes: int = 0  # request bodies sent in this round, retries included
    requests: int = 0
    delay_s: float = 0.0  # the wait before the next attempt (failures only)
    error: str | None = None
    # A transient failure the council did not ask us to wait out (no Retry-After): an alert
    # committed during the backoff may retry sooner.
    alert_may_retry_sooner: bool = False


@dataclass(frozen=True)
class UploaderStatus:
    """A snapshot for `hearth status` and `hearth sync now`. Times are the hub's Unix time."""

    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None  # the latest failure, kept after a success for diagnosis
    last_error_at: float | None = None
    consecutive_failures: int = 0  # 0: the last attempt succeeded
    next_attempt_at: float | None = None
    clock_offset_s: float | None = None
    events_sent: int = 0  # acknowledged as held
    batches_sent: int = 0  # acknowledged uploads
    events_rejected: int = 0  # set aside: the council refused them, or they cannot be encoded
    bytes_sent: int = 0  # request bodies, every attempt
    council_config_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DrainReport:
    """What `drain` (hearth sync now) did."""

    ok: bool  # the uploader caught up: a round found nothing left to send
    events: int
    batches: int
    bytes: int
    requests: int
    duration_s: float
    remaining: int  # unsynced events at the end (a running hub may have added some)
    error: str | None = None


@dataclass
class _Prepared:
    events: list[StoredEvent]
    body: bytes
    health: dict[str, Any] = field(repr=False)


@dataclass
class _Tally:
    """What one round achieved, over the requests it took (a 422 isolation takes several)."""

    events: int = 0
    held: int = 0
    new: int = 0
    renumbered: int = 0
    rejected: int = 0  # set aside this round (counted from the status at the end)
    ack: UploadAck | None = None


class _Refused(Exception):
    """Our request was refused in a way retrying soon cannot fix."""


class _ContentRefused(Exception):
    """The council refused the batch for what is in it (422, or 413): some event in it may
    never be accepted, so it is isolated (Uploader._isolate), never retried as it is."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Uploader:
    """Uploads the store's outbox to the council. See the module docstring.

    `http` is owned by the caller (close it after the uploader stops); build it with
    sync.client.make_http_client so TLS and timeouts follow the config. `clock` and `rng` are
    injectable so tests never sleep; the defaults are the real clock and a fresh Random.
    """

    def __init__(
        self,
        store: Store,
        signer: Signer,
        hub_id: str,
        settings: UploadSettings,
        http: httpx.AsyncClient,
        *,
        health: HealthReporter | None = None,
        clock: UploadClock | None = None,
        rng: random.Random | None = None,
        config_version: int | None = None,
        on_config_version: Callable[[int], None] | None = None,
        beat: Callable[..., object] | None = None,
    ) -> None:
        if clock is None:
            from hub.clock import SystemClock

            clock = SystemClock()
        self.store = store
        self.settings = settings
        self.hub_id = hub_id
        self._clock = clock
        self._rng = rng or random.Random()
        self._council = CouncilClient(http, settings.url, hub_id, signer, clock)
        # What the council last said it understands, kept in the store so a restarted hub
        # does not send an older council what it refuses before its first answer.
        self._features_kept = store.get_meta(META_COUNCIL_FEATURES)
        self._council.features = parse_features(self._features_kept)
        self._health = health
        self._backoff = Backoff(settings.retry_base_s, settings.retry_max_s, self._rng)
        self._bucket = (
            TokenBucket(
                settings.bandwidth_kib_s * 1024,
                settings.bandwidth_kib_s * 1024 * settings.burst_s,
                clock.monotonic(),
            )
            if settings.bandwidth_kib_s
            else None
        )
        self._max_body = settings.max_body_bytes
        self._max_events = min(settings.batch_max_events, MAX_BATCH_EVENTS)
        # The config version this hub has applied; the lead's code updates it after a fetch.
        self.applied_config_version = config_version
        self._on_config_version = on_config_version
        # The service watchdog's heartbeat (hub.service.Beat): called each round, and before
        # each wait with how long the wait and the next round may take, so an idle or backing
        # off uploader is healthy and only a round that hangs counts as stuck.
        self._beat = beat
        self._status = UploaderStatus()
        self._persisted_error: str | None = None
        self._refused_batch_logged: tuple[int, int, int] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ----------------------------------------------------------------------------

    def status(self) -> UploaderStatus:
        return replace(self._status, clock_offset_s=self._council.clock_offset_s)

    @property
    def council_config_version(self) -> int | None:
        """The council's current config version for this hub, from the last answer."""
        return self._status.council_config_version

    def wake(self) -> None:
        """Start the next round now if the uploader is idle. Safe from any thread (the group
        committer's, the event loop's): call it after an alert is committed."""
        loop = self._loop
        if loop is None:
            self._wake.set()  # not running yet: the first round starts at once anyway
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the hub is stopping
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Upload forever (cancel the task to stop). Never raises but CancelledError."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._heartbeat(0.0)
            try:
                result = await self.upload_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the uploader for good
                log.exception("upload round failed unexpectedly")
                result = await self._failed(_Transient(f"internal error: {exc!r}"), 0, 0)
            if result.outcome is Outcome.SENT:
                continue  # more may wait; an empty outbox shows as EMPTY next round
            if result.outcome is Outcome.EMPTY:
                await self._wait(self.settings.sync_interval_s, wakeable=True)
            elif result.alert_may_retry_sooner and result.delay_s > ALERT_RETRY_S:
                if await self._wait(result.delay_s, wakeable=True):
                    # An alert arrived during the backoff: one jittered try within seconds
                    # rather than up to retry_max_s later. Alerts are rare, so this cannot
                    # become a storm; a failure goes back to the full backoff.
                    await self._wait(self._rng.uniform(0, ALERT_RETRY_S), wakeable=False)
            else:
                await self._wait(result.delay_s, wakeable=False)

    async def drain(self, *, max_rounds: int | None = None) -> DrainReport:
        """Upload until the outbox is empty or a round fails (no waiting between rounds)."""
        started = self._clock.monotonic()
        events = batches = sent_bytes = requests = rounds = 0
        error: str | None = None
        ok = False
        while max_rounds is None or rounds < max_rounds:
            rounds += 1
            try:
                result = await self.upload_once()
            except Exception as exc:  # a bug: reported by the command, not a traceback
                log.exception("upload round failed unexpectedly")
                error = f"internal error: {exc!r}"
                break
            sent_bytes += result.bytes
            requests += result.requests
            if result.outcome is Outcome.SENT:
                events += result.held
                batches += 1
                continue
            ok = result.outcome is Outcome.EMPTY
            error = result.error
            break
        remaining = await asyncio.to_thread(self.store.queue_depth)
        return DrainReport(
            ok=ok,
            events=events,
            batches=batches,
            bytes=sent_bytes,
            requests=requests,
            duration_s=self._clock.monotonic() - started,
            remaining=remaining,
            error=error,
        )

    async def fetch_config(self) -> HubConfig:
        """GET /v1/config (signed): the council-managed sections and their version. Raises
        CouncilError on a refusal and httpx.RequestError when the council is unreachable."""
        response = await self._council.send("GET", CONFIG_PATH)
        await self._keep_features()
        if response.status_code != 200:
            raise CouncilError(response.status_code, response_detail(response))
        try:
            config = HubConfig.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise CouncilError(200, f"the config answer is not a hub config: {exc}") from None
        self._note_config_version(config.config_version)
        return config

    # -- one round -------------------------------------------------------------------------

    async def upload_once(self) -> RoundResult:
        """One upload with its immediate retries (a stale timestamp once; a 413 with a
        smaller batch). Network and council faults become the result, never exceptions."""
        self._loop = asyncio.get_running_loop()  # for wake() from other threads
        self._wake.clear()  # a wake from here on starts another round after this one
        self._status = replace(self._status, last_attempt_at=self._clock.wall())
        requests_before = self._council.requests
        bytes_before = self._council.body_bytes

        def spent() -> tuple[int, int]:
            return (
                self._council.body_bytes - bytes_before,
                self._council.requests - requests_before,
            )

        tally = _Tally()
        rejected_before = self._status.events_rejected
        prepared: _Prepared | None = None
        try:
            prepared = await self._prepare_paced()
            if prepared is None:
                return RoundResult(Outcome.EMPTY)
            await self._deliver(prepared, tally)
        except (_Transient, _Refused) as failure:
            return await self._failed(failure, *spent(), prepared=prepared)
        tally.rejected = self._status.events_rejected - rejected_before
        body_bytes, requests = spent()
        return await self._succeeded(tally, body_bytes, requests)

    async def _post(self, prepared: _Prepared) -> UploadAck:
        """POST one batch and check the answer (see _check_answer for what raises what)."""
        try:
            response = await self._council.send(
                "POST", UPLOAD_PATH, prepared.body, content_type=CONTENT_TYPE
            )
        except httpx.RequestError as exc:
            raise _Transient(describe_transport_error(exc)) from exc
        await self._keep_features()
        return self._check_answer(response)

    async def _deliver(self, prepared: _Prepared, tally: _Tally) -> None:
        """Send the round's batch: a 413 shrinks it (the council's limit is below ours), a
        refusal of its content isolates the event(s) the council cannot take."""
        while True:
            try:
                ack = await self._post(prepared)
            except _ContentRefused as refusal:
                if refusal.status == 413 and len(prepared.events) > 1:
                    smaller = await self._shrink_after_413(prepared)
                    if smaller is None:
                        return  # all it kept could not be encoded, and was set aside
                    prepared = smaller
                    await self._pace(prepared)
                    continue
                if prepared.health:
                    # Perhaps the council refuses the health report, not an event: the same
                    # events once more without it, before any of them is suspected.
                    bare = await asyncio.to_thread(self._encode_checked, prepared.events, {}, False)
                    if bare is None:
                        return  # all of them could not be encoded, and were set aside
                    prepared = bare
                    continue
                await self._isolate(prepared.events, refusal, tally)
                return
            await self._record(prepared, ack, tally)
            return

    async def _isolate(
        self,
        events: list[StoredEvent],
        refusal: _ContentRefused,
        tally: _Tally,
    ) -> None:
        """The council refused this batch for its content. Retrying it as it is would fail
        for ever and block everything behind it (the outbox is read from its head), alerts
        included. So the batch is cut down to the event(s) the council refuses (see
        _narrow_down) and those are set aside (Store.reject, reported to the council by an
        upload_rejected event), on two conditions that keep a council refusing everything (a
        version mismatch, a proxy's tiny limit) from emptying the outbox, alerts first: the
        council accepted other events in this same round, and at most
        MAX_REJECTS_PER_ROUND are set aside. Otherwise nothing is set aside and the round
        waits like any refusal. A transient failure on the way ends the round as usual; what
        was acknowledged so far stays acknowledged."""
        suspects: list[tuple[StoredEvent, str]] = []
        await self._narrow_down(events, refusal, tally, suspects)
        if not suspects:
            return
        if tally.held == 0:
            await self._probe([stored.seq for stored, _ in suspects], refusal, tally)
        if len(suspects) > MAX_REJECTS_PER_ROUND:
            raise _Refused(
                f"{refusal.reason} ({len(suspects)} events refused in one round: waiting"
                " rather than setting so many aside)"
            )
        for stored, reason in suspects:
            await asyncio.to_thread(self._reject_seqs, [stored.seq], reason)

    async def _probe(self, suspects: list[int], refusal: _ContentRefused, tally: _Tally) -> None:
        """Nothing else in the batch was accepted (a lone event at the head of the outbox):
        send the events queued behind the suspects, to learn whether the council takes
        anything at all. Raises _Refused (set nothing aside, wait) when it does not, or when
        nothing else waits (then the suspect blocks nothing yet)."""
        excluded = set(suspects)
        queued = await asyncio.to_thread(self._next_batch, self._max_events + len(excluded))
        behind = [e for e in queued if e.seq not in excluded][: self._max_events]
        prepared = (
            await asyncio.to_thread(self._encode_checked, behind, {}, True) if behind else None
        )
        if prepared is not None:
            await self._pace(prepared)
            with contextlib.suppress(_ContentRefused):  # then tally.held stays 0: below
                await self._record(prepared, await self._post(prepared), tally)
        if tally.held == 0:
            raise _Refused(
                f"{refusal.reason} (the council accepted no other event either: waiting"
                " rather than setting any aside)"
            )

    async def _narrow_down(
        self,
        events: list[StoredEvent],
        refusal: _ContentRefused,
        tally: _Tally,
        suspects: list[tuple[StoredEvent, str]],
    ) -> None:
        """Send the refused batch again in parts: its alerts alone first, then halves, each
        cut again if refused, until each refused event is alone (`suspects`). One bad event
        among n costs about 2 log2(n) requests. The parts go without the health report."""
        if len(events) == 1:
            suspects.append((events[0], refusal.reason))
            return
        alerts = [e for e in events if isinstance(e.event, Alert)]
        if alerts and len(alerts) < len(events):
            parts = [alerts, [e for e in events if not isinstance(e.event, Alert)]]
        else:
            half = len(events) // 2
            parts = [events[:half], events[half:]]
        for part in parts:
            prepared = await asyncio.to_thread(self._encode_checked, part, {}, False)
            if prepared is None:
                continue
            await self._pace(prepared)
            try:
                ack = await self._post(prepared)
            except _ContentRefused as again:
                await self._narrow_down(prepared.events, again, tally, suspects)
                continue
            await self._record(prepared, ack, tally)

    async def _record(self, prepared: _Prepared, ack: UploadAck, tally: _Tally) -> None:
        held, new, renumbered = await asyncio.to_thread(self._settle, prepared, ack)
        tally.events += len(prepared.events)
        tally.held += held
        tally.new += new
        tally.renumbered += renumbered
        tally.ack = ack

    def _check_answer(self, response: httpx.Response) -> UploadAck:
        status = response.status_code
        if status == 200:
            try:
                return UploadAck.model_validate(response.json())
            except (ValueError, ValidationError) as exc:
                raise _Transient(f"the council's answer is not an acknowledgement: {exc}") from None
        detail = response_detail(response)
        if status in (429, 503):
            wait = retry_after_s(response.headers.get("Retry-After"), self._council.now())
            raise _Transient(f"the council is busy ({status}): {detail}", wait)
        if status >= 500 or status in (408, 425):
            raise _Transient(f"the council failed ({status}): {detail}")
        if status in (413, 422):
            raise _ContentRefused(status, f"the council refused the upload ({status}): {detail}")
        raise _Refused(f"the council refused the upload ({status}): {detail}")

    async def _shrink_after_413(self, prepared: _Prepared) -> _Prepared | None:
        """The council's limit is below what we sent: halve the byte bound (kept for later
        batches) and cut this batch to fit. Each 413 at least halves the batch, so this ends
        within log2(5000) steps, at one event if need be (which a 413 then sets aside)."""
        size = len(prepared.body)
        self._max_body = min(self._max_body, max(1, size // 2))
        log.warning(
            "the council refused %d bytes (413): batches now at most %d bytes",
            size,
            self._max_body,
        )
        half = prepared.events[: max(1, len(prepared.events) // 2)]
        return await asyncio.to_thread(self._encode_checked, half, prepared.health, True)

    async def _prepare_paced(self) -> _Prepared | None:
        """The next batch, paced by the bandwidth cap. If an alert arrives while waiting for
        bandwidth, the batch is made again so the alert goes in this request. A batch that
        starts with alerts is not held back: it goes at once and the bucket goes into debt,
        which later (routine) batches wait off."""
        while True:
            prepared = await asyncio.to_thread(self._prepare)
            if prepared is None or self._bucket is None or _urgent(prepared):
                break
            wait = self._bucket.wait_for(len(prepared.body), self._clock.monotonic())
            if wait <= 0:
                break
            if not await self._wait(wait, wakeable=True, planned=False):
                break
            self._wake.clear()
        if prepared is not None and self._bucket is not None:
            self._bucket.take(len(prepared.body), self._clock.monotonic())
        return prepared

    async def _pace(self, prepared: _Prepared) -> None:
        if self._bucket is None:
            return
        size = len(prepared.body)
        wait = self._bucket.wait_for(size, self._clock.monotonic())
        if wait > 0 and not _urgent(prepared):
            await self._clock.sleep(wait)
        self._bucket.take(size, self._clock.monotonic())

    # -- store side (worker thread) --------------------------------------------------------

    def _prepare(self) -> _Prepared | None:
        while True:
            events = self._next_batch(self._max_events)
            if not events:
                return None
            # The queue the council should see is what still waits once this batch is held.
            waiting = self.store.queue_depth() - len(events)
            health = (
                self._health.report(waiting, self.applied_config_version)
                if self._health is not None
                else {}
            )
            prepared = self._encode_checked(events, health, True)
            if prepared is not None:
                return prepared
            # Every event of that batch was set aside as unencodable: take the next one.

    def _encode_checked(
        self, events: list[StoredEvent], health: dict[str, Any], cut: bool
    ) -> _Prepared | None:
        """Encode (cut to the byte bound if `cut`). An event the hub cannot encode (a NaN
        that SQLite gave back as NULL, say) would fail every batch it is in: it is found by
        encoding each event alone and set aside (Store.reject). None when nothing is left."""
        try:
            return self._encode_within(events, health, cut)
        except (TypeError, ValueError, OverflowError) as exc:
            failure = exc
        bad: dict[int, str] = {}
        for stored in events:
            try:
                encode_batch(self.hub_id, [stored], {})
            except (TypeError, ValueError, OverflowError) as exc:
                bad[stored.seq] = f"the hub cannot encode it: {type(exc).__name__}: {exc}"
        if not bad:
            # Not an event: the health report. Send the events without it rather than none.
            log.error("cannot encode the health report (%s): sending the batch without it", failure)
            return self._encode_within(events, {}, cut)
        for seq, reason in bad.items():
            self._reject_seqs([seq], reason)
        rest = [e for e in events if e.seq not in bad]
        return self._encode_checked(rest, health, cut) if rest else None

    def _encode_within(
        self, events: list[StoredEvent], health: dict[str, Any], cut: bool = True
    ) -> _Prepared:
        """Encode, cutting the batch (from its end: the lowest priority) until the body fits
        the byte bound. A single event is sent whatever its size; the council judges it."""
        while True:
            body = encode_batch(self.hub_id, events, health, corrected_flag=self._clock_feature)
            if not cut or len(body) <= self._max_body or len(events) == 1:
                return _Prepared(events, body, health)
            # Proportional guess with a margin, always at least one event fewer.
            fits = int(len(events) * self._max_body / len(body) * 0.9)
            kept = events[: max(1, min(len(events) - 1, fits))]
            if "queue_depth" in health:  # what was cut off still waits
                health = {**health, "queue_depth": health["queue_depth"] + len(events) - len(kept)}
            events = kept

    def _reject_seqs(self, seqs: list[int], reason: str) -> None:
        try:
            self.store.reject(seqs, reason)
        except StoreWriteError as exc:
            raise _Transient(f"could not set aside events the council refused: {exc}") from exc
        rejected = self._status.events_rejected + len(seqs)
        self._status = replace(self._status, events_rejected=rejected)
        log.error(
            "set aside event(s) %s: %s; they stay in the buffer (hearth status counts them)"
            " and the council is told by an upload_rejected event",
            seqs,
            reason,
        )
        self.wake()  # the report is a new event to send

    def _settle(self, prepared: _Prepared, ack: UploadAck) -> tuple[int, int, int]:
        """Apply the acknowledgement, then correct the clock with the answer's time: one
        trip to the worker thread for both."""
        counts = self._apply_ack(prepared, ack)
        self._correct_clock()
        return counts

    def _apply_ack(self, prepared: _Prepared, ack: UploadAck) -> tuple[int, int, int]:
        sent = sorted(e.seq for e in prepared.events)
        # A forged or broken answer must not wedge the hub: a high water this far above
        # anything it numbered would push every later sequence number out of SQLite's range.
        last = self.store.last_seq
        ceiling = min(last + MAX_HIGH_WATER_AHEAD, SQLITE_MAX_SEQ - MAX_HIGH_WATER_AHEAD)
        if ack.high_water > ceiling:
            raise _Transient(
                f"the council's acknowledgement claims sequence numbers up to {ack.high_water},"
                f" far above this hub's last ({last}): ignored"
            )
        try:
            held = _seqs_within(ack.held, sent)
            held_set = set(held)
            conflicts = [s for s in _seqs_within(ack.conflicts, sent) if s not in held_set]
        except ValueError as exc:
            raise _Transient(f"the council's acknowledgement is malformed: {exc}") from None
        if not held and not conflicts:
            raise _Transient(
                f"the council acknowledged none of the {len(sent)} events sent"
                f" (new={ack.new}, high water {ack.high_water})"
            )
        try:
            if held:
                self.store.mark_synced(held)
            moved = self.store.renumber(conflicts, floor=ack.high_water) if conflicts else {}
            self.store.raise_seq_floor(ack.high_water)
        except StoreWriteError as exc:
            # The council holds them; they will be sent again and counted as duplicates.
            raise _Transient(f"could not record the acknowledgement in the buffer: {exc}") from exc
        return len(held), ack.new, len(moved)

    @property
    def _clock_feature(self) -> bool:
        """Whether the council has said it understands corrected stamps (codec bit 3) and
        clock_corrected events. Until it has, stamps go without the bit (their corrected
        wall time, flagged unsynchronised) and the events wait in the outbox: an older
        council refuses both, and the refusal would set events aside for good."""
        return FEATURE_CLOCK_CORRECTED in (self._council.features or ())

    def _next_batch(self, limit: int) -> list[StoredEvent]:
        return self.store.next_batch(limit, hold_clock_reports=not self._clock_feature)

    async def _keep_features(self) -> None:
        """Persist what the council announced, when it changed (rarely: an upgrade). The
        comparison runs here: only a change costs a trip to the worker thread."""
        features = self._council.features
        if features is None:
            return
        text = ",".join(sorted(features))
        if text != self._features_kept:
            await asyncio.to_thread(self._store_features, text, features)

    def _store_features(self, text: str, features: frozenset[str]) -> None:
        try:
            self.store.set_meta({META_COUNCIL_FEATURES: text})
        except StoreWriteError as exc:  # kept in memory; the next answer tries again
            log.warning("could not keep the council's features: %s", exc)
            return
        log.info("the council understands: %s", text or "no optional features")
        self._features_kept = text
        if FEATURE_CLOCK_CORRECTED in features:
            self.wake()  # clock_corrected events held back may go now

    def _correct_clock(self) -> None:
        """The council's answer dates this boot's monotonic clock: correct what the hub
        stamped before its clock was synchronised, the events just acknowledged included
        (hub.store.clockfix). Best effort: a failure leaves them flagged, to retry later."""
        origin = self._council.council_origin_s
        boot = clockfix.boot_of(self._clock)
        if origin is None or boot is None:
            return  # a clock without a boot (tests, simulated time): nothing to correct
        try:
            self.store.correct_clock(clockfix.Origin(boot, origin, clockfix.OriginSource.COUNCIL))
        except StoreWriteError as exc:
            log.warning("%s", exc)

    def _persist_error(self, error: str, at: float) -> None:
        """Record the error for `hearth status`; once per distinct error in a run of
        failures, so a week offline does not write the SD card every retry."""
        if error == self._persisted_error:
            return
        # Kept in the store for `hearth status` in another process.
        values: dict[str, str | None] = {
            META_LAST_SYNC_ERROR: error,
            META_LAST_SYNC_ERROR_AT: str(at),
        }
        try:
            self.store.set_meta(values)
            self._persisted_error = error
        except StoreWriteError as exc:
            log.warning("could not record the sync state in the buffer: %s", exc)

    # -- outcomes --------------------------------------------------------------------------

    async def _succeeded(self, tally: _Tally, body_bytes: int, requests: int) -> RoundResult:
        now = self._clock.wall()
        self._backoff.reset()
        self._refused_batch_logged = None
        st = self._status
        self._status = replace(
            st,
            last_success_at=now,
            consecutive_failures=0,
            next_attempt_at=None,
            events_sent=st.events_sent + tally.held,
            batches_sent=st.batches_sent + 1,
            bytes_sent=st.bytes_sent + body_bytes,
        )
        self._persisted_error = None  # the next failure is recorded again, with its time
        if tally.ack is not None:
            self._note_config_version(tally.ack.config_version)
        log.debug(
            "uploaded %d events (%d new, %d renumbered, %d set aside) in %d bytes",
            tally.held,
            tally.new,
            tally.renumbered,
            tally.rejected,
            body_bytes,
        )
        return RoundResult(
            Outcome.SENT,
            events=tally.events,
            held=tally.held,
            new=tally.new,
            renumbered=tally.renumbered,
            rejected=tally.rejected,
            bytes=body_bytes,
            requests=requests,
        )

    async def _failed(
        self,
        failure: Exception,
        body_bytes: int,
        requests: int,
        *,
        prepared: _Prepared | None = None,
    ) -> RoundResult:
        message = str(failure)
        retry_after: float | None = None
        if isinstance(failure, _Refused):
            outcome = Outcome.REFUSED
            delay = self._backoff.at_cap()
            key = _batch_key(prepared)
            if key != self._refused_batch_logged:
                self._refused_batch_logged = key
                log.error(
                    "%s; the batch (%s) stays in the buffer and is retried every %.0f s at most:"
                    " this needs a fix on the hub or the council",
                    message,
                    _describe_batch(prepared),
                    self.settings.retry_max_s,
                )
            else:
                log.debug("%s (again)", message)
        else:
            outcome = Outcome.RETRY
            retry_after = failure.retry_after if isinstance(failure, _Transient) else None
            jittered = self._backoff.next_delay()
            delay = honoured_delay(retry_after, jittered, self.settings.retry_max_s, self._rng)
            repeated = message == self._status.last_error and self._status.consecutive_failures
            level = logging.DEBUG if repeated else logging.WARNING
            log.log(level, "upload failed: %s; next try in %.1f s", message, delay)
        now = self._clock.wall()
        st = self._status
        self._status = replace(
            st,
            last_error=message,
            last_error_at=now,
            consecutive_failures=self._backoff.failures,
            next_attempt_at=now + delay,
            bytes_sent=st.bytes_sent + body_bytes,
        )
        await asyncio.to_thread(self._persist_error, message, now)
        return RoundResult(
            outcome,
            bytes=body_bytes,
            requests=requests,
            delay_s=delay,
            error=message,
            alert_may_retry_sooner=outcome is Outcome.RETRY and retry_after is None,
        )

    def _note_config_version(self, version: int) -> None:
        previous = self._status.council_config_version
        self._status = replace(self._status, council_config_version=version)
        if (
            self._on_config_version is not None
            and version != previous
            and version != self.applied_config_version
        ):
            try:
                self._on_config_version(version)
            except Exception:
                log.exception("the config version listener failed")

    # -- waiting ---------------------------------------------------------------------------

    @property
    def round_allowance_s(self) -> float:
        """The longest a healthy round takes: a few requests at the timeout (a stale-clock
        retry, a 413 shrink), plus the store's work; the watchdog's allowance for a round."""
        return 4 * self.settings.timeout_s + 60.0

    def _heartbeat(self, waiting_s: float) -> None:
        if self._beat is not None:
            self._beat(waiting_s + self.round_allowance_s)

    async def _wait(self, seconds: float, *, wakeable: bool, planned: bool = True) -> bool:
        """Sleep on the uploader's clock; True if a wake cut it short."""
        self._heartbeat(seconds)
        if planned:
            self._status = replace(self._status, next_attempt_at=self._clock.wall() + seconds)
        if wakeable and self._wake.is_set():
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        if not wakeable:
            await sleeper
            return False
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        return waker.done() and not waker.cancelled()


def _batch_key(prepared: _Prepared | None) -> tuple[int, int, int]:
    if prepared is None or not prepared.events:
        return (0, 0, 0)
    seqs = [e.seq for e in prepared.events]
    return (min(seqs), max(seqs), len(seqs))


def _describe_batch(prepared: _Prepared | None) -> str:
    if prepared is None or not prepared.events:
        return "no batch"
    first, last, count = _batch_key(prepared)
    return f"{count} events, seqs {first}..{last}, {len(prepared.body)} bytes"


def _urgent(prepared: _Prepared) -> bool:
    """A batch that starts with alerts: the bandwidth cap does not hold it back."""
    return bool(prepared.events) and isinstance(prepared.events[0].event, Alert)


def _seqs_within(ranges: list[tuple[int, int]], sent: list[int]) -> list[int]:
    """The seqs of `sent` (sorted) inside the answer's ranges, without expanding the ranges:
    only what was in the batch counts, and a hostile range of 2**63 numbers costs nothing."""
    found: set[int] = set()
    for first, last in ranges:
        if last < first:
            raise ValueError(f"range [{first}, {last}] is reversed")
        found.update(sent[bisect.bisect_left(sent, first) : bisect.bisect_right(sent, last)])
    return sorted(found)

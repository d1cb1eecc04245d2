"""The hub's HTTP side of the council API: TLS set-up, signed requests, the council's clock.

Every hub-signed request goes through `CouncilClient.send`, so signing, the clock offset and
the one retry after a stale timestamp live in one place for the uploader and the config fetch.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx

from sync.protocol import HEADER_COUNCIL_FEATURES, HEADER_COUNCIL_TIME, parse_features
from sync.signing import Signer, sign_request

log = logging.getLogger(__name__)


class UploadClock(Protocol):
    """The time the uploader needs; hub.clock.SystemClock is one, tests pass a fake."""

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class CouncilError(Exception):
    """The council answered with a refusal; `status` and `detail` say what it said."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the council answered {status}: {detail}")
        self.status = status
        self.detail = detail


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verification is always on. With `ca_bundle`, only that CA is trusted (a council that
    runs its own CA should not also accept any public CA's certificate for its name);
    without, the system's trust store."""
    if ca_bundle is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use the CA bundle {ca_bundle}: {exc}") from exc


def make_http_client(
    *,
    ca_bundle: Path | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The uploader's client: TLS verified, config timeouts, no redirects (a redirected
    upload would be signed for the wrong path; better to report the wrong URL)."""
    return httpx.AsyncClient(
        verify=tls_context(ca_bundle),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        transport=transport,
    )


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from, outermost first: httpx wraps the ssl or socket
    error, sometimes twice. One walk for the uploader, enroll and doctor."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a connection error, if that is what it was."""
    for cause in exception_chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def describe_transport_error(exc: httpx.RequestError) -> str:
    """One line for a failed connection, saying so plainly when it is the certificate."""
    cert = untrusted_certificate(exc)
    if cert is not None:
        return f"TLS: the council's certificate is not trusted ({cert.verify_message})"
    return f"no connection to the council ({type(exc).__name__}: {str(exc) or 'no detail'})"


def response_detail(response: httpx.Response) -> str:
    """The council's {"detail": ...} text, or the start of whatever else it sent."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no detail"


def council_time(response: httpx.Response) -> float | None:
    raw = response.headers.get(HEADER_COUNCIL_TIME)
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


class CouncilClient:
    """Signed requests for one hub. Keeps offset = council time - local time from every
    answer (refusals included) and signs with local time + offset, so a Pi whose clock is
    wrong after a power cut can still upload (see sync.signing on clock skew)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        council_url: str,
        hub_id: str,
        signer: Signer,
        clock: UploadClock,
    ) -> None:
        self._http = http
        self._base = council_url.rstrip("/")
        self.hub_id = hub_id
        self._signer = signer
        self._clock = clock
        self.clock_offset_s: float | None = None  # None until the council has answered once
        # The council's time at which the hub's monotonic clock read 0, from the latest
        # answer: the hub's boot origin by the council's clock (hub.store.clockfix). Taken
        # against monotonic time, so a wall clock that jumps between answers changes nothing.
        self.council_origin_s: float | None = None
        # What the council said it understands (sync.protocol.HEADER_COUNCIL_FEATURES), from
        # the latest answer that came from it (one with its time); None until then.
        self.features: frozenset[str] | None = None
        self.requests = 0
        self.body_bytes = 0

    def _note_council_time(self, response: httpx.Response) -> None:
        when = council_time(response)
        if when is not None:
            self.clock_offset_s = when - self._clock.wall()
            self.council_origin_s = when - self._clock.monotonic()
            # No header: a council from before feature announcements, which has none. A
            # proxy's own answer (no council time) says nothing about the council.
            self.features = (
                parse_features(response.headers.get(HEADER_COUNCIL_FEATURES)) or frozenset()
            )

    def now(self) -> float:
        """The hub's best estimate of the council's time."""
        return self._clock.wall() + (self.clock_offset_s or 0.0)

    async def send(
        self, method: str, path: str, body: bytes = b"", *, content_type: str | None = None
    ) -> httpx.Response:
        """Send one signed request; transport errors propagate (httpx.TransportError).

        A 401 that says the timestamp was refused is retried at once, once, with the offset
        the refusal itself carried: the first answer after boot often is exactly that.
        """
        # The URL is built once and its raw path (percent-encoded, with any query) is what is
        # signed: exactly the bytes the council sees, also behind a path prefix
        # (https://host/hearth) whose characters need encoding.
        url = httpx.URL(self._base + path)
        signed_path = url.raw_path.decode("ascii")
        for attempt in range(2):
            signed_at = self.now()
            headers = sign_request(self._signer, self.hub_id, method, signed_path, body, signed_at)
            if content_type is not None:
                headers["Content-Type"] = content_type
            self.requests += 1
            self.body_bytes += len(body)
            response = await self._http.request(method, url, content=body, headers=headers)
            self._note_council_time(response)
            if attempt == 0 and self._timestamp_refused(response, signed_at):
                log.warning(
                    "the council refused our timestamp (%s); retrying with its clock (offset"
                    " %+.1f s)",
                    response_detail(response),
                    self.clock_offset_s or 0.0,
                )
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _timestamp_refused(self, response: httpx.Response, signed_at: float) -> bool:
        if response.status_code != 401 or council_time(response) is None:
            return False
        if "timestamp" not in response_detail(response).lower():
            return False
        # Retrying helps only if the new offset moves the timestamp we would sign.
        return abs(self.now() - signed_at) >= 1.0

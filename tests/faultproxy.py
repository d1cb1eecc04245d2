"""A fault-injecting TCP proxy for HTTP/1.1, between the hub's uploader and the council.

Why by hand: the tools that do this (toxiproxy, pumba, tc netem) are external daemons or need
root, and none of them can "answer 503 without forwarding" or "drop the answer after the
council committed", which are the faults that matter for exactly-once delivery. The proxy
has to understand just enough HTTP to find request and response boundaries.

Faults are chosen per request, so a keep-alive connection meets a new draw for each request.
Requests are framed by Content-Length only (the uploader never sends chunked bodies; one that
does is refused and counted as `unsupported`). Responses are framed by Content-Length,
chunked encoding, or the end of the connection. Every choice comes from one seeded
`random.Random`, so a failing run can be repeated.

The kinds (`Fault`):
- refuse: RST the connection before reading the request (at accept for a new connection).
- reset: forward part of the request to the council, then RST both sides.
- stall: read the request, forward nothing, hold the connection until the client gives up.
- stall_response: forward the request, read the council's answer (it has committed), and hold
  it back until the client gives up.
- http_500 / http_503 / http_429: answer without forwarding; 503 and 429 carry Retry-After.
- drop_response: forward the request, read the council's whole answer, RST the client.

RST rather than FIN: SO_LINGER with a zero timeout makes close() send a reset, which is what a
crashed middlebox or a NAT timeout looks like to the client.

The proxy runs its own asyncio loop in a background thread and stops with its context:
    with FaultProxy(("127.0.0.1", council_port), weights=..., seed=1) as proxy:
        client = httpx.Client(base_url=proxy.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType

__all__ = ["DEFAULT_WEIGHTS", "Fault", "FaultProxy", "ProxyStats"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


class Fault(StrEnum):
    NONE = "none"
    REFUSE = "refuse"
    RESET = "reset"
    STALL = "stall"
    STALL_RESPONSE = "stall_response"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    DROP_RESPONSE = "drop_response"


FAULTS = tuple(f for f in Fault if f is not Fault.NONE)

# Roughly half the requests meet a fault; the stalls cost a client timeout each, so they are
# rarer than the cheap faults.
DEFAULT_WEIGHTS: Mapping[Fault, float] = {
    Fault.NONE: 50,
    Fault.REFUSE: 8,
    Fault.RESET: 8,
    Fault.STALL: 3,
    Fault.STALL_RESPONSE: 3,
    Fault.HTTP_500: 7,
    Fault.HTTP_503: 7,
    Fault.HTTP_429: 7,
    Fault.DROP_RESPONSE: 8,
}

_CANNED = {
    Fault.HTTP_500: (500, "Internal Server Error"),
    Fault.HTTP_503: (503, "Service Unavailable"),
    Fault.HTTP_429: (429, "Too Many Requests"),
}


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what the proxy saw and did."""

    connections: int
    requests: int  # requests read whole from a client (not counting refused connections)
    forwarded: int  # requests sent whole to the council
    faults: Counter[Fault]  # faults applied, by kind (NONE = passed through untouched)
    paths: Counter[str]  # requests read, by "METHOD /path"
    upstream_status: Counter[int]  # status codes of the council's answers
    retry_after: tuple[int, ...]  # Retry-After values sent, in order
    stalls_ended_by_client: int  # stalls that ended because the client gave up
    errors: Counter[str] = field(default_factory=Counter)  # unsupported framing, upstream down

    def attempts(self, path: str) -> int:
        """Requests for `path` that reached the proxy, plus refused connections (whose request
        was never read: with one client talking to one endpoint, they were attempts too)."""
        return self.paths[path] + self.faults[Fault.REFUSE]


class _Unsupported(Exception):
    pass


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    body: bytes
    close: bool  # the client asked to close after this request

    @property
    def raw(self) -> bytes:
        return self.head + self.body


class FaultProxy:
    """See the module docstring. Thread-safe: stats and weights may be read and changed from
    the test thread while the proxy runs."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        weights: Mapping[Fault, float] | None = None,
        seed: int = 0,
        script: Iterable[Fault] = (),
        retry_after: tuple[int, int] = (1, 3),
        stall_max_s: float = 30.0,
        reset_in_body: bool = False,
    ) -> None:
        """`script` faults are applied first, in order (for tests that need one exact
        fault); then draws follow `weights`. Retry-After is drawn from `retry_after`
        (inclusive). A stall ends when the client gives up, or after `stall_max_s`. A reset
        cuts the request anywhere, or with `reset_in_body` inside its body (so the server
        has begun handling it)."""
        self.upstream = upstream
        self._rng = random.Random(seed)
        self._script = list(script)
        self._retry_after = retry_after
        self._stall_max_s = stall_max_s
        self._reset_in_body = reset_in_body
        self._lock = threading.Lock()
        self._weights: dict[Fault, float] = {}
        self.set_weights(DEFAULT_WEIGHTS if weights is None else weights)
        self._connections = 0
        self._requests = 0
        self._forwarded = 0
        self._faults: Counter[Fault] = Counter()
        self._paths: Counter[str] = Counter()
        self._status: Counter[int] = Counter()
        self._retry_after_sent: list[int] = []
        self._stalls_ended_by_client = 0
        self._errors: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.port = 0

    # -- control from the test thread ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_weights(self, weights: Mapping[Fault, float]) -> None:
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        with self._lock:
            self._weights = {f: float(weights.get(f, 0.0)) for f in Fault}

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                connections=self._connections,
                requests=self._requests,
                forwarded=self._forwarded,
                faults=Counter(self._faults),
                paths=Counter(self._paths),
                upstream_status=Counter(self._status),
                retry_after=tuple(self._retry_after_sent),
                stalls_ended_by_client=self._stalls_ended_by_client,
                errors=Counter(self._errors),
            )

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._started.wait(timeout=30)
        if self._start_error is not None:
            raise RuntimeError("the fault proxy did not start") from self._start_error
        if not self._started.is_set():
            raise RuntimeError("the fault proxy did not start within 30 s")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("the fault proxy did not stop within 30 s")

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to __enter__ if it happens at start
            self._start_error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._connection(reader, writer)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, limit=_MAX_HEAD)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    def _draw(self) -> Fault:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            kinds = list(self._weights)
            return self._rng.choices(kinds, weights=[self._weights[k] for k in kinds])[0]

    def _count(self, fault: Fault | None = None, path: str | None = None) -> None:
        with self._lock:
            if fault is not None:
                self._faults[fault] += 1
            if path is not None:
                self._requests += 1
                self._paths[path] += 1

    async def _connection(
        self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter
    ) -> None:
        with self._lock:
            self._connections += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        first = True
        try:
            while True:
                fault = self._draw()
                if fault is Fault.REFUSE:
                    # A kept-alive connection is reset when the client's next request starts.
                    if first or await creader.read(1):
                        self._count(Fault.REFUSE)
                    return
                try:
                    request = await _read_request(creader)
                except _Unsupported as exc:
                    with self._lock:
                        self._errors[f"unsupported: {exc}"] += 1
                    return
                if request is None:  # the client closed an idle connection
                    return
                self._count(path=f"{request.method} {request.target.split('?')[0]}")
                if fault in _CANNED:
                    await self._answer_canned(cwriter, fault)
                    if request.close:
                        _close(cwriter)
                        return
                    first = False
                    continue
                if fault is Fault.STALL:
                    self._count(Fault.STALL)
                    await self._hold_until_client_leaves(creader)
                    return
                if upstream is not None and (upstream[0].at_eof() or upstream[1].is_closing()):
                    _reset(upstream[1])  # the council closed it while idle (keep-alive timeout)
                    upstream = None
                if upstream is None:
                    try:
                        upstream = await asyncio.open_connection(*self.upstream)
                    except OSError as exc:
                        with self._lock:
                            self._errors[f"upstream: {type(exc).__name__}"] += 1
                        return
                ureader, uwriter = upstream
                if fault is Fault.RESET:
                    first_cut = len(request.head) if self._reset_in_body and request.body else 1
                    with self._lock:
                        cut = self._rng.randrange(first_cut, len(request.raw))
                    uwriter.write(request.raw[:cut])
                    await uwriter.drain()
                    self._count(Fault.RESET)
                    return
                uwriter.write(request.raw)
                await uwriter.drain()
                with self._lock:
                    self._forwarded += 1
                try:
                    response, keep_alive = await _read_response(ureader, request.method)
                except (ConnectionError, asyncio.IncompleteReadError):
                    with self._lock:  # the council broke off: its fault, not an injected one
                        self._errors["upstream: closed without an answer"] += 1
                    return
                with self._lock:
                    self._status[_status_of(response)] += 1
                if fault is Fault.DROP_RESPONSE:
                    self._count(Fault.DROP_RESPONSE)
                    return
                if fault is Fault.STALL_RESPONSE:
                    self._count(Fault.STALL_RESPONSE)
                    await self._hold_until_client_leaves(creader)
                    return
                self._count(Fault.NONE)
                cwriter.write(response)
                await cwriter.drain()
                if request.close or not keep_alive:
                    _close(cwriter)
                    return
                first = False
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # either side went away: nothing more to do on this connection
        finally:
            # Every ending but a clean "close after response" is a reset (both sides).
            _reset(cwriter)
            if upstream is not None:
                _reset(upstream[1])

    async def _answer_canned(self, cwriter: asyncio.StreamWriter, fault: Fault) -> None:
        """A bare error answer; 503 and 429 say when to come back, in the header and (so a
        client's error message shows it) in the detail."""
        status, reason = _CANNED[fault]
        detail = "injected by the fault proxy"
        headers = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
        if fault is not Fault.HTTP_500:
            with self._lock:
                delay = self._rng.randint(*self._retry_after)
                self._retry_after_sent.append(delay)
            headers.append(f"Retry-After: {delay}")
            detail += f"; Retry-After {delay}"
        body = json.dumps({"detail": detail}).encode()
        headers.append(f"Content-Length: {len(body)}")
        self._count(fault)
        cwriter.write(("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body)
        await cwriter.drain()

    async def _hold_until_client_leaves(self, creader: asyncio.StreamReader) -> None:
        """Wait for the client's EOF or reset (its timeout), bounded by stall_max_s."""
        try:
            async with asyncio.timeout(self._stall_max_s):
                while await creader.read(65536):
                    pass
        except TimeoutError:
            return
        except ConnectionError:
            pass
        with self._lock:
            self._stalls_ended_by_client += 1


# -- HTTP framing ----------------------------------------------------------------------------


def _headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return lines[0], fields


def _content_length(fields: list[tuple[str, str]]) -> int | None:
    values = {v for k, v in fields if k == "content-length"}
    if not values:
        return None
    if len(values) > 1 or not next(iter(values)).isdigit():
        raise _Unsupported(f"bad Content-Length {sorted(values)}")
    length = int(next(iter(values)))
    if length > _MAX_BODY:
        raise _Unsupported(f"body of {length} bytes")
    return length


def _wants_close(fields: list[tuple[str, str]]) -> bool:
    return any(k == "connection" and "close" in v.lower() for k, v in fields)


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    start, fields = _headers(head)
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Unsupported(f"request line {start[:80]!r}")
    if any(k == "transfer-encoding" for k, _ in fields):
        raise _Unsupported("Transfer-Encoding in a request")
    if any(k == "expect" for k, _ in fields):
        raise _Unsupported("Expect in a request")
    length = _content_length(fields) or 0
    body = await reader.readexactly(length)
    close = _wants_close(fields) or parts[2] == "HTTP/1.0"
    return _Request(parts[0], parts[1], head, body, close)


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[bytes, bool]:
    """One whole response as raw bytes, and whether the connection may carry another."""
    head = await reader.readuntil(b"\r\n\r\n")
    _, fields = _headers(head)
    status = _status_of(head)
    keep_alive = not _wants_close(fields)
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return head, keep_alive
    if any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in fields):
        return head + await _read_chunked(reader), keep_alive
    length = _content_length(fields)
    if length is None:  # framed by the end of the connection
        return head + await reader.read(), False
    return head + await reader.readexactly(length), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        out += await reader.readexactly(size + 2)
    while True:  # trailers, up to the empty line
        line = await reader.readuntil(b"\r\n")
        out += line
        if line == b"\r\n":
            return bytes(out)


def _status_of(response: bytes) -> int:
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


# -- closing -------------------------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on, timeout 0, then drop the socket unflushed."""
    if writer.transport.is_closing():
        return
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    """An orderly close (FIN) after a response the client received whole."""
    writer.close()

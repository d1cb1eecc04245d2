"""The fault proxy itself: each fault is what it claims to be, seen from a plain httpx client
and from a small upstream server that records what reached it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.faultproxy import FAULTS, Fault, FaultProxy, ProxyStats


class Upstream(ThreadingHTTPServer):
    """Keep-alive HTTP/1.1 server that records each request body it read whole."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[bytes] = []
        self.started = 0  # requests whose head arrived (the handler began)
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # resets from the proxy are the point of these tests, not errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: Upstream

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.started += 1
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        if len(body) != length:  # the proxy cut the request: the "council" commits nothing
            self.close_connection = True
            return
        with self.server.lock:
            self.server.received.append(body)
        answer = b"ok:" + body[:16]
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:  # a chunked answer, to check the proxy's response framing
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def proxy_for(upstream: Upstream, *script: Fault, **kwargs: object) -> FaultProxy:
    host, port = upstream.server_address[:2]
    return FaultProxy((str(host), int(port)), script=script, **kwargs)  # type: ignore[arg-type]


BODY = b"x" * 5000


def test_no_fault_passes_requests_through_on_one_kept_alive_connection(
    upstream: Upstream,
) -> None:
    with (
        proxy_for(upstream, weights={Fault.NONE: 1}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5) as client,
    ):
        for i in range(3):
            response = client.post("/v1/upload", content=BODY + bytes([i]))
            assert response.status_code == 200
            assert response.content == b"ok:" + BODY[:16]
        chunked = client.get("/stream")
        assert chunked.text == "hello chunked world"
        stats = proxy.stats()
    assert upstream.received == [BODY + bytes([i]) for i in range(3)]
    assert stats.connections == 1
    assert stats.requests == stats.forwarded == 4
    assert stats.faults == {Fault.NONE: 4}
    assert stats.paths == {"POST /v1/upload": 3, "GET /stream": 1}
    assert stats.attempts("POST /v1/upload") == 3


@pytest.mark.parametrize("fault", [Fault.HTTP_500, Fault.HTTP_503, Fault.HTTP_429])
def test_canned_answers_never_reach_upstream_and_keep_the_connection(
    upstream: Upstream, fault: Fault
) -> None:
    with (
        proxy_for(upstream, fault, weights={Fault.NONE: 1}, retry_after=(2, 2)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5) as client,
    ):
        refused = client.post("/v1/upload", content=BODY)
        after = client.post("/v1/upload", content=b"second")
        stats = proxy.stats()
    assert refused.status_code == int(fault.value.removeprefix("http_"))
    if fault is Fault.HTTP_500:
        assert refused.json() == {"detail": "injected by the fault proxy"}
        assert "Retry-After" not in refused.headers
    else:
        assert refused.json() == {"detail": "injected by the fault proxy; Retry-After 2"}
        assert refused.headers["Retry-After"] == "2"
    assert after.status_code == 200
    assert upstream.received == [b"second"]
    assert stats.connections == 1
    assert stats.faults == {fault: 1, Fault.NONE: 1}
    assert stats.retry_after == (() if fault is Fault.HTTP_500 else (2,))


def test_refuse_resets_the_connection_before_anything_is_read(upstream: Upstream) -> None:
    with proxy_for(upstream, Fault.REFUSE, weights={Fault.NONE: 1}) as proxy:
        # An RST, not an orderly close: recv raises instead of returning b"".
        with (
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
            pytest.raises(ConnectionResetError),
        ):
            sock.recv(1)
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            assert client.post("/v1/upload", content=BODY).status_code == 200
        stats = proxy.stats()
    assert stats.faults == {Fault.REFUSE: 1, Fault.NONE: 1}
    assert stats.connections == 2
    assert stats.attempts("POST /v1/upload") == 2
    assert upstream.received == [BODY]


def test_refuse_on_a_kept_alive_connection_hits_the_next_request(upstream: Upstream) -> None:
    with (
        proxy_for(upstream, Fault.NONE, Fault.REFUSE, weights={Fault.NONE: 1}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5) as client,
    ):
        assert client.post("/v1/upload", content=b"one").status_code == 200
        with pytest.raises(httpx.TransportError):
            client.post("/v1/upload", content=b"two")
        assert client.post("/v1/upload", content=b"three").status_code == 200
        stats = proxy.stats()
    assert upstream.received == [b"one", b"three"]
    assert stats.faults == {Fault.NONE: 2, Fault.REFUSE: 1}


def test_reset_forwards_part_of_the_request_then_resets_both_sides(upstream: Upstream) -> None:
    with (
        proxy_for(upstream, Fault.RESET, seed=3, weights={Fault.NONE: 1}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5) as client,
    ):
        with pytest.raises(httpx.TransportError):
            client.post("/v1/upload", content=BODY)
        stats = proxy.stats()
    assert upstream.received == []
    assert stats.faults == {Fault.RESET: 1}
    assert stats.forwarded == 0


def test_reset_in_body_cuts_after_the_head(upstream: Upstream) -> None:
    """With reset_in_body the server has begun the request when the reset comes."""
    with proxy_for(upstream, *[Fault.RESET] * 5, reset_in_body=True) as proxy:
        for _ in range(5):
            with (
                httpx.Client(base_url=proxy.url, timeout=5) as client,
                pytest.raises(httpx.TransportError),
            ):
                client.post("/v1/upload", content=BODY)
        wait_for(lambda: upstream.started == 5)
        assert proxy.stats().faults == {Fault.RESET: 5}
    assert upstream.received == []


def stalled_until_the_client_gives_up(upstream: Upstream, fault: Fault) -> ProxyStats:
    """One upload through `fault`, given up by the client; the proxy's stats once it has
    seen the client go."""
    with (
        proxy_for(upstream, fault, weights={Fault.NONE: 1}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=0.3) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/upload", content=BODY)
        client.close()
        wait_for(lambda: proxy.stats().stalls_ended_by_client == 1)
        return proxy.stats()


def test_stall_holds_the_request_until_the_client_gives_up(upstream: Upstream) -> None:
    stats = stalled_until_the_client_gives_up(upstream, Fault.STALL)
    assert upstream.received == []
    assert stats.faults == {Fault.STALL: 1}


def test_stall_response_commits_upstream_then_holds_the_answer(upstream: Upstream) -> None:
    stats = stalled_until_the_client_gives_up(upstream, Fault.STALL_RESPONSE)
    assert upstream.received == [BODY]
    assert stats.faults == {Fault.STALL_RESPONSE: 1}
    assert stats.upstream_status == {200: 1}


def test_drop_response_lets_upstream_commit_and_resets_the_client(upstream: Upstream) -> None:
    with (
        proxy_for(upstream, Fault.DROP_RESPONSE, weights={Fault.NONE: 1}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5) as client,
    ):
        with pytest.raises(httpx.TransportError):
            client.post("/v1/upload", content=BODY)
        stats = proxy.stats()
    assert upstream.received == [BODY]
    assert stats.faults == {Fault.DROP_RESPONSE: 1}
    assert stats.forwarded == 1
    assert stats.upstream_status == {200: 1}


def test_random_draws_follow_the_weights_and_the_seed(upstream: Upstream) -> None:
    """Same seed, same traffic: same faults. Every kind with weight occurs; none without."""
    weights: dict[Fault, float] = {
        f: 1.0 for f in FAULTS if f not in (Fault.STALL, Fault.STALL_RESPONSE)
    }
    weights[Fault.NONE] = 2.0
    runs = []
    for _ in range(2):
        # One connection per request keeps the draws in request order.
        with (
            proxy_for(upstream, weights=weights, seed=42) as proxy,
            httpx.Client(base_url=proxy.url, timeout=5, headers={"Connection": "close"}) as client,
        ):
            outcomes = []
            for i in range(120):
                try:
                    outcomes.append(client.post("/v1/upload", content=b"%d" % i).status_code)
                except httpx.TransportError:
                    outcomes.append(0)
            runs.append((outcomes, proxy.stats().faults))
    assert runs[0] == runs[1]
    faults = runs[0][1]
    assert set(faults) == set(weights)
    assert sum(faults.values()) == 120


def test_upstream_trouble_and_unframeable_requests_are_counted_as_errors() -> None:
    """Errors are the proxy's own findings, never injected faults: tests assert there are none."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # a port nobody listens on
        port = placeholder.getsockname()[1]
        with (
            FaultProxy(("127.0.0.1", port), weights={Fault.NONE: 1}) as proxy,
            httpx.Client(base_url=proxy.url, timeout=5) as client,
        ):
            with pytest.raises(httpx.TransportError):
                client.post("/v1/upload", content=b"x")
            chunked = iter([b"a", b"b"])  # a generator body goes out chunked
            with pytest.raises(httpx.TransportError):
                client.post("/v1/upload", content=chunked)
            stats = proxy.stats()
    assert stats.errors == {
        "upstream: ConnectionRefusedError": 1,
        "unsupported: Transfer-Encoding in a request": 1,
    }
    assert stats.forwarded == 0


def test_proxy_stops_with_its_context(upstream: Upstream) -> None:
    with proxy_for(upstream, Fault.STALL, weights={Fault.NONE: 1}, stall_max_s=60) as proxy:
        # A connection held in a stall must not keep the proxy alive.
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        held.sendall(b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        wait_for(lambda: proxy.stats().faults[Fault.STALL] == 1)
        port = proxy.port
    assert proxy._thread is not None and not proxy._thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(ConnectionResetError):
        held.recv(1)
    held.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition, returning as soon as it holds (no fixed sleep)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)

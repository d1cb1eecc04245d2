"""The council over real HTTP where the wire itself matters: early refusals reach the client
(no TCP reset), deeply nested JSON is refused before it is stored, older signed uploads do
not roll the fleet view back, and a hub whose enroll answer was lost can ask again.

On SQLite and PostgreSQL (the `council` fixture of tests.test_council_security).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException

from hub.events import SystemEvent, SystemKind
from hub.identity import HubIdentity
from sync.codec import CONTENT_TYPE
from sync.council.app import DRAIN_EXTRA_BYTES, _bad_request
from sync.council.records import MAX_JSON_DEPTH
from sync.protocol import (
    CONFIG_PATH,
    ENROLL_PATH,
    EVENTS_PATH,
    HEALTH_PATH,
    MAX_UPLOAD_BYTES,
    UPLOAD_PATH,
)
from tests.council_server import CouncilServer, SignedHub
from tests.factories import reading
from tests.test_council_security import (  # noqa: F401  (council, hub_a: fixtures)
    council,
    held,
    hub_a,
    post_enroll,
    refused,
)

pytestmark = pytest.mark.timeout(120)


# -- raw HTTP/1.1, to see what a socket sees -------------------------------------------------


def connect(council: CouncilServer) -> socket.socket:  # noqa: F811
    port = int(council.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: council",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-cased headers, body), read by its Content-Length. Any
    socket error, a reset included, propagates: the point of these tests."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed before a full answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed inside the answer's body")
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


# -- early refusals are heard ----------------------------------------------------------------


def test_an_oversized_upload_hears_its_413_and_no_reset(
    council: CouncilServer,  # noqa: F811
    hub_a: SignedHub,  # noqa: F811
) -> None:
    """The client sends all 2 MB before it reads (as most do). A council that answers from
    Content-Length and closes with the body unread makes the kernel reset the connection,
    and the 413 is lost; it must read (and drop) the rest first."""
    body = b"\0" * (2 * MAX_UPLOAD_BYTES)
    assert len(body) <= MAX_UPLOAD_BYTES + DRAIN_EXTRA_BYTES
    headers = {**hub_a.sign(body), "Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}
    head = request_head("POST", UPLOAD_PATH, headers)
    before = held(council.store)
    for _ in range(20):
        with connect(council) as sock:
            sock.sendall(head + body)
            status, answer_headers, detail = read_answer(sock)
            assert status == 413, detail
            assert answer_headers["connection"] == "close"
            assert sock.recv(65536) == b""  # an orderly close (FIN), not a reset
    assert held(council.store) == before


def test_a_body_declared_far_past_the_limit_is_refused_without_reading_it(
    council: CouncilServer,  # noqa: F811
) -> None:
    """Reading what a client only announces would let it hold the council: 10 GB is refused
    from the header alone, and the connection closed."""
    with connect(council) as sock:
        sock.sendall(request_head("POST", UPLOAD_PATH, {"Content-Length": str(10**10)}))
        status, headers, _ = read_answer(sock)
    assert (status, headers["connection"]) == (413, "close")


@pytest.mark.parametrize(
    ("target", "extra", "status"),
    [
        (UPLOAD_PATH, {"Content-Encoding": "br"}, 415),
        (UPLOAD_PATH, {"Content-Type": "text/plain"}, 415),
        ("/v1/no-such-endpoint", {}, 404),
        (HEALTH_PATH, {}, 405),
    ],
    ids=["content-encoding", "content-type", "unknown-path", "wrong-method"],
)
def test_an_early_refusal_reads_the_body_and_keeps_the_connection(
    council: CouncilServer,  # noqa: F811
    hub_a: SignedHub,  # noqa: F811
    target: str,
    extra: dict[str, str],
    status: int,
) -> None:
    """Refused before the endpoint reads the body, yet the whole body is read (a body within
    the limit costs little) and the same connection serves the next request."""
    body = b"\1" * 200_000
    if target == HEALTH_PATH:
        body = body[:100_000]  # within the JSON endpoints' limit
    headers = {**hub_a.sign(body, target=target), "Content-Type": CONTENT_TYPE, **extra}
    headers["Content-Length"] = str(len(body))
    before = held(council.store)
    with connect(council) as sock:
        for _ in range(3):
            sock.sendall(request_head("POST", target, headers) + body)
            got, answer_headers, detail = read_answer(sock)
            assert got == status, detail
            assert answer_headers.get("connection") != "close"
        sock.sendall(request_head("GET", HEALTH_PATH, {}))
        assert read_answer(sock)[0] == 200
    assert held(council.store) == before


# -- deeply nested JSON ----------------------------------------------------------------------


def nest(levels: int) -> dict[str, Any]:
    """An object `levels` deep: nest(1) == {}, nest(2) == {"a": {}}, ..."""
    doc: dict[str, Any] = {}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


def deep_system_event(levels: int) -> SystemEvent:
    """A system event whose record (the stored body) is `levels` deep."""
    return SystemEvent(SystemKind.GAP, nest(levels - 1), reading().stamp)


def test_json_nested_too_deeply_is_refused_before_anything_is_stored(
    council: CouncilServer,  # noqa: F811
    hub_a: SignedHub,  # noqa: F811
) -> None:
    """Stored, such a document would break every page and config fetch that holds it (500s
    for ever); so it is the sender's 422, on each way in."""
    admin = council.client(council.admin_token)
    too_deep = MAX_JSON_DEPTH + 1
    config = {"config": {"s": nest(too_deep - 2)}}  # the body: 2 levels, then nest()
    put = lambda doc: lambda: admin.put(f"/v1/hubs/{hub_a.hub_id}/config", json=doc)  # noqa: E731
    refused(council, 422, put(config), "nested deeper")
    # Deeper than json.loads itself can go (a RecursionError inside the parser).
    brackets = b'{"config": {"s": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    json_headers = {"Content-Type": "application/json"}
    send = lambda: admin.put(  # noqa: E731
        f"/v1/hubs/{hub_a.hub_id}/config", content=brackets, headers=json_headers
    )
    refused(council, 422, send, "nested too deeply")

    upload = hub_a.batch([(50_000, deep_system_event(too_deep))])
    for _ in range(2):  # a retry of the same batch: the same answer
        refused(council, 422, lambda: hub_a.post(upload), "nested deeper")
    health = hub_a.batch([(50_001, reading())], health={"future": nest(too_deep)})
    refused(council, 422, lambda: hub_a.post(health), "nested deeper")

    assert admin.get(EVENTS_PATH, params={"limit": 10_000}).status_code == 200
    assert hub_a.get(CONFIG_PATH).status_code == 200


def test_json_nested_up_to_the_limit_is_kept_and_read_back(
    council: CouncilServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    hub = council.enroll_hub(tmp_path)
    admin = council.client(council.admin_token)
    config = {"config": {"s": nest(MAX_JSON_DEPTH - 2)}}
    put = admin.put(f"/v1/hubs/{hub.hub_id}/config", json=config)
    assert put.status_code == 200, put.text
    assert hub.get(CONFIG_PATH).json()["config"] == config["config"]
    answer = hub.post(hub.batch([(1, deep_system_event(MAX_JSON_DEPTH))]))
    assert answer.status_code == 200, answer.text
    page = admin.get(EVENTS_PATH, params={"hub": hub.hub_id})
    assert page.status_code == 200, page.text
    assert page.json()["events"][0]["body"]["details"] == nest(MAX_JSON_DEPTH - 1)


def test_bodies_json_cannot_parse_say_why(council: CouncilServer) -> None:  # noqa: F811
    json_headers = {"Content-Type": "application/json"}
    send = lambda: httpx.post(  # noqa: E731
        council.url + ENROLL_PATH, content=b'{"code": "\xff"}', headers=json_headers
    )
    refused(council, 422, send, "not UTF-8")


def test_a_bad_request_that_is_not_json_is_not_called_json() -> None:
    """FastAPI's 400 for a body it cannot parse becomes the contract's 422 with its own
    detail, not a claim about JSON (which StrictJSONRoute answers itself)."""
    exc = HTTPException(400, "There was an error parsing the body")
    answer = asyncio.run(_bad_request(None, exc))  # type: ignore[arg-type]
    assert answer.status_code == 422
    assert b"JSON" not in answer.body and b"error parsing the body" in answer.body


# -- older signed uploads and the fleet view -------------------------------------------------


def test_an_older_signed_upload_does_not_roll_the_fleet_view_back(
    council: CouncilServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    hub = council.enroll_hub(tmp_path)
    sensors = {"t1": {"room": "hall", "kind": "temperature", "last_seen": time.time(),
                      "battery": 9.0, "silent": False}}  # fmt: skip
    newer = hub.batch([(1, reading())], health={"queue_depth": 1, "uptime_s": 50.0,
                                                "sensors": sensors})  # fmt: skip
    older = hub.batch([(2, reading())], health={"queue_depth": 70, "uptime_s": 1.0})
    older_headers = hub.sign(older, now=time.time() - 120)  # within the skew window
    assert hub.post(newer).status_code == 200
    first = council.store.fleet_entry(hub.hub_id)
    late = hub.post(older, older_headers)
    assert late.status_code == 200 and late.json()["new"] == 1  # the events are kept
    entry = council.store.fleet_entry(hub.hub_id)
    assert entry is not None and first is not None
    assert (entry.queue_depth, entry.uptime_s, entry.last_contact) == (1, 50.0, first.last_contact)
    assert entry.clock_offset_s == first.clock_offset_s and entry.events_held == 2
    # `hearth sync now` reports no sensors and no uptime: the service's detail stays.
    sync_now = hub.batch([(3, reading())], health={"queue_depth": 0})
    assert hub.post(sync_now).status_code == 200
    entry = council.store.fleet_entry(hub.hub_id)
    assert entry is not None and (entry.queue_depth, entry.uptime_s) == (0, 50.0)
    assert [b.sensor_id for b in entry.low_batteries] == ["t1"]


# -- enrollment whose answer was lost --------------------------------------------------------


def test_enrolling_again_with_the_same_code_and_key_answers_the_same_hub(
    council: CouncilServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    code = council.store.create_code(3600.0).code
    identity = HubIdentity.generate(tmp_path / "hub")
    first = post_enroll(council, code, identity)
    assert first.status_code == 201, first.text
    hub_id = first.json()["hub_id"]
    admin = council.client(council.admin_token)
    assert admin.put(f"/v1/hubs/{hub_id}/config", json={"config": {"c": {"x": 1}}}).is_success
    again = post_enroll(council, code, identity)
    assert again.status_code == 201, again.text
    assert again.json() == {"hub_id": hub_id, "config_version": 2, "config": {"c": {"x": 1}}}
    other = HubIdentity.generate(tmp_path / "other")
    refused(council, 403, lambda: post_enroll(council, code, other), "used")

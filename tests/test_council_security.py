"""Every way a request can be wrong is refused with the right 4xx, stores nothing, never 5xx.

Over real HTTP to the real app under uvicorn (tests.council_server), on SQLite and once on
PostgreSQL. Each refusal test snapshots what the council holds (event count, the fleet view
with every hub's last contact and counters, the codes) before and after: "refused" must also
mean "nothing written", not just a status code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.events import Alert, AlertState, Event, Severity, SystemEvent, SystemKind
from hub.identity import HubIdentity
from sync.codec import CONTENT_TYPE
from sync.council.store import CouncilStore
from sync.protocol import (
    CODES_PATH,
    CONFIG_PATH,
    ENROLL_PATH,
    EVENTS_PATH,
    FLEET_PATH,
    HEADER_COUNCIL_TIME,
    MAX_UPLOAD_BYTES,
    TOKENS_PATH,
    UPLOAD_PATH,
)
from sync.signing import HEADER_HUB, HEADER_SIGNATURE
from tests.council_server import (
    ENGINES,
    CouncilServer,
    SignedHub,
    engine_database,
    running_council,
)
from tests.factories import alert, reading

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=ENGINES)
def council(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CouncilServer]:
    """One council per engine for the module; tests compare before/after, not absolutes."""
    with (
        engine_database(request, tmp_path_factory.mktemp("council")) as url,
        running_council(url) as server,
    ):
        yield server
        # The 500 path was never taken: every refusal in this module was a client fault.
        assert server.app.state.unexpected_errors == 0


@pytest.fixture(scope="module")
def hub_a(council: CouncilServer, tmp_path_factory: pytest.TempPathFactory) -> SignedHub:
    return council.enroll_hub(tmp_path_factory.mktemp("hub-a"), name="a")


@pytest.fixture(scope="module")
def hub_b(council: CouncilServer, tmp_path_factory: pytest.TempPathFactory) -> SignedHub:
    return council.enroll_hub(tmp_path_factory.mktemp("hub-b"), name="b")


def held(store: CouncilStore) -> tuple[Any, ...]:
    """Everything a refused request could have changed."""
    return (store.count_events(), tuple(store.fleet()), tuple(store.list_codes()))


def refused(
    council: CouncilServer, status: int, send: Callable[[], httpx.Response], detail: str = ""
) -> httpx.Response:
    """Send, check the status, the contract's error shape and that nothing was stored."""
    before = held(council.store)
    answer = send()
    assert answer.status_code == status, answer.text
    assert HEADER_COUNCIL_TIME in answer.headers
    assert isinstance(answer.json()["detail"], str)
    assert detail.lower() in answer.json()["detail"].lower()
    assert held(council.store) == before
    return answer


def batch_of(hub: SignedHub, first_seq: int = 1, n: int = 3) -> bytes:
    events = [(first_seq + i, reading(float(i), value=20.0 + i)) for i in range(n)]
    return hub.batch([*events, (first_seq + n, alert(99.0))])


# -- signed upload ---------------------------------------------------------------------------


def test_unsigned_upload_is_401(council: CouncilServer, hub_a: SignedHub) -> None:
    body = batch_of(hub_a)
    answer = refused(council, 401, lambda: hub_a.post(body, headers={}), "hub signature")
    assert answer.headers["WWW-Authenticate"] == "Hearth-Signature"


def test_signature_missing_but_other_headers_present_is_401(
    council: CouncilServer, hub_a: SignedHub
) -> None:
    body = batch_of(hub_a)
    headers = hub_a.sign(body)
    del headers[HEADER_SIGNATURE]
    refused(council, 401, lambda: hub_a.post(body, headers), "missing_header")


def test_wrong_signature_is_401(council: CouncilServer, hub_a: SignedHub) -> None:
    body = batch_of(hub_a)
    headers = hub_a.sign(body)
    raw = bytearray(base64.b64decode(headers[HEADER_SIGNATURE]))
    raw[0] ^= 1
    headers[HEADER_SIGNATURE] = base64.b64encode(raw).decode()
    refused(council, 401, lambda: hub_a.post(body, headers), "forged")


def test_tampered_body_is_401(council: CouncilServer, hub_a: SignedHub) -> None:
    body = batch_of(hub_a)
    headers = hub_a.sign(body)
    tampered = batch_of(hub_a, first_seq=1000)  # a valid batch, but not the signed one
    refused(council, 401, lambda: hub_a.post(tampered, headers), "body_tampered")


def test_another_hubs_key_is_401(
    council: CouncilServer, hub_a: SignedHub, hub_b: SignedHub
) -> None:
    """Hub B signs with its own key but claims to be hub A: A's key does not verify it."""
    body = batch_of(hub_a)
    headers = hub_b.sign(body, hub_id=hub_a.hub_id)
    refused(council, 401, lambda: hub_a.post(body, headers), "forged")


def test_unknown_hub_is_401(council: CouncilServer, tmp_path: Path) -> None:
    stranger = SignedHub(council.url, "hub-notenrolled0", HubIdentity.generate(tmp_path))
    body = batch_of(stranger)
    refused(council, 401, lambda: stranger.post(body), "unknown hub")


@pytest.mark.parametrize("offset_s", [-1000.0, 1000.0], ids=["stale", "future"])
def test_timestamp_outside_the_window_is_401(
    council: CouncilServer, hub_a: SignedHub, offset_s: float
) -> None:
    body = batch_of(hub_a)
    headers = hub_a.sign(body, now=time.time() + offset_s)
    refused(council, 401, lambda: hub_a.post(body, headers), "timestamp")


def test_signed_for_another_target_is_401(council: CouncilServer, hub_a: SignedHub) -> None:
    """The query string is part of what is signed: adding one breaks the signature."""
    body = batch_of(hub_a)
    headers = hub_a.sign(body)
    send = lambda: httpx.post(  # noqa: E731
        council.url + UPLOAD_PATH + "?x=1",
        content=body,
        headers={**headers, "Content-Type": CONTENT_TYPE},
    )
    refused(council, 401, send, "target_changed")


def test_batch_for_another_hub_is_403(
    council: CouncilServer, hub_a: SignedHub, hub_b: SignedHub
) -> None:
    """Correctly signed by B, but the batch inside says A: hubs write only their own data."""
    body = hub_b.batch([(1, reading())], hub_id=hub_a.hub_id)
    refused(council, 403, lambda: hub_b.post(body), "only their own data")


def test_replayed_upload_is_200_and_stores_nothing_new(
    council: CouncilServer, hub_a: SignedHub
) -> None:
    body = batch_of(hub_a, first_seq=500)
    headers = hub_a.sign(body)
    first = hub_a.post(body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["new"] == 4
    count = council.store.count_events()
    replay = hub_a.post(body, headers)  # byte for byte the same request
    assert replay.status_code == 200, replay.text
    assert replay.json()["new"] == 0
    assert replay.json()["duplicates"] == 4
    assert replay.json()["held"] == [[500, 503]]
    assert council.store.count_events() == count


def test_malformed_payload_is_422(council: CouncilServer, hub_a: SignedHub) -> None:
    body = b"HRTB this is not a batch"
    refused(council, 422, lambda: hub_a.post(body), "batch")


def test_wrongly_typed_health_report_is_422(council: CouncilServer, hub_a: SignedHub) -> None:
    body = hub_a.batch([(900, reading())], health={"queue_depth": "lots"})
    refused(council, 422, lambda: hub_a.post(body), "queue_depth")


def test_a_health_report_nested_too_deeply_is_422(council: CouncilServer, hub_a: SignedHub) -> None:
    deep: dict[str, object] = {}
    for _ in range(40):
        deep = {"x": deep}
    body = hub_a.batch([(901, reading())], health={"extra": deep})
    refused(council, 422, lambda: hub_a.post(body), "nested deeper")


def test_unstorable_text_in_a_health_report_is_stored_replaced(
    council: CouncilServer, hub_a: SignedHub
) -> None:
    """Like records: a refusal would block the hub's outbox for ever."""
    sensors = {"door": {"room": "hall\x00way", "kind": "contact", "battery": 9.0}}
    answer = hub_a.post(hub_a.batch([(902, reading())], health={"sensors": sensors}))
    assert answer.status_code == 200, answer.text
    entry = council.store.fleet_entry(hub_a.hub_id)
    assert entry is not None
    assert [b.room for b in entry.low_batteries] == ["hall\ufffdway"]


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/octet-stream", "text/plain"]
)
def test_wrong_content_type_is_415(
    council: CouncilServer, hub_a: SignedHub, content_type: str | None
) -> None:
    body = batch_of(hub_a)

    def send() -> httpx.Response:
        request = httpx.Request("POST", council.url + UPLOAD_PATH, content=body)
        request.headers.update(hub_a.sign(body))
        if content_type is None:
            request.headers.pop("Content-Type", None)
        else:
            request.headers["Content-Type"] = content_type
        with httpx.Client() as client:
            return client.send(request)

    refused(council, 415, send, "content-type")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip"])
def test_content_encoding_is_415(council: CouncilServer, hub_a: SignedHub, encoding: str) -> None:
    body = batch_of(hub_a)
    headers = {**hub_a.sign(body), "Content-Encoding": encoding}
    refused(council, 415, lambda: hub_a.post(body, headers), "content-encoding")


def test_identity_content_encoding_is_accepted(council: CouncilServer, hub_a: SignedHub) -> None:
    body = batch_of(hub_a, first_seq=700)
    answer = hub_a.post(body, {**hub_a.sign(body), "Content-Encoding": "identity"})
    assert answer.status_code == 200, answer.text


# -- oversized bodies ------------------------------------------------------------------------

BIG = b"\0" * (MAX_UPLOAD_BYTES + 1)


def test_oversized_body_is_413(council: CouncilServer, hub_a: SignedHub) -> None:
    answer = refused(council, 413, lambda: hub_a.post(BIG), "larger than")
    assert answer.headers["Connection"] == "close"  # the rest is not read


def test_oversized_chunked_body_is_413(council: CouncilServer, hub_a: SignedHub) -> None:
    """No Content-Length at all: the council counts while reading and stops at the limit."""
    headers = {**hub_a.sign(BIG), "Content-Type": CONTENT_TYPE}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(BIG), 65536):
            yield BIG[start : start + 65536]

    refused(
        council,
        413,
        lambda: httpx.post(council.url + UPLOAD_PATH, content=chunks(), headers=headers),
        "larger than",
    )


def raw_exchange(council: CouncilServer, head: bytes, body: bytes) -> bytes:
    """Send bytes no well-behaved client would, and read the answer until the council
    closes the connection (it may reset it while we still send: that is the point)."""
    port = int(council.url.rsplit(":", 1)[1])
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # it stopped reading and closed: read its answer
            sock.sendall(head + body)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def test_lying_content_length_is_cut_off_while_reading(
    council: CouncilServer, hub_a: SignedHub
) -> None:
    """Content-Length claims 10 bytes, the chunked body brings 2 MB: the byte count read,
    not the header, decides."""
    chunk = b"\0" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
    head = (
        f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: council\r\nContent-Type: {CONTENT_TYPE}\r\n"
        "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    before = held(council.store)
    answer = raw_exchange(council, head, body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert HEADER_COUNCIL_TIME.lower().encode() in answer.lower()
    assert held(council.store) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_json_body_is_413(council: CouncilServer, chunked: bool) -> None:
    big = b'{"code": "' + b"A" * 300_000 + b'", "public_key": "x"}'
    content = iter([big[:100_000], big[100_000:]]) if chunked else big
    refused(
        council,
        413,
        lambda: httpx.post(
            council.url + ENROLL_PATH,
            content=content,
            headers={"Content-Type": "application/json"},
        ),
        "larger than",
    )


# -- signed config fetch ---------------------------------------------------------------------


def test_config_fetch_needs_a_valid_signature(council: CouncilServer, hub_a: SignedHub) -> None:
    assert hub_a.get(CONFIG_PATH).status_code == 200
    refused(council, 401, lambda: httpx.get(council.url + CONFIG_PATH), "hub signature")
    refused(council, 401, lambda: hub_a.get(CONFIG_PATH, now=time.time() - 1000), "timestamp")
    headers = hub_a.sign(b"", method="GET", target=CONFIG_PATH)
    headers[HEADER_HUB] = "hub-someoneelse0"
    refused(council, 401, lambda: httpx.get(council.url + CONFIG_PATH, headers=headers), "unknown")


# -- enrollment ------------------------------------------------------------------------------


def enroll_body(code: str, key: HubIdentity | str) -> dict[str, Any]:
    public = key if isinstance(key, str) else key.public_key_b64()
    return {"code": code, "public_key": public}


def post_enroll(council: CouncilServer, code: str, key: HubIdentity | str) -> httpx.Response:
    return httpx.post(council.url + ENROLL_PATH, json=enroll_body(code, key))


def test_reused_code_is_403(council: CouncilServer, tmp_path: Path) -> None:
    code = council.store.create_code(3600.0).code
    first = post_enroll(council, code, HubIdentity.generate(tmp_path / "1"))
    assert first.status_code == 201, first.text
    other = HubIdentity.generate(tmp_path / "2")
    refused(council, 403, lambda: post_enroll(council, code, other), "used")


def test_expired_code_is_403(council: CouncilServer, tmp_path: Path) -> None:
    code = council.store.create_code(60.0, now=time.time() - 120.0).code
    identity = HubIdentity.generate(tmp_path)
    refused(council, 403, lambda: post_enroll(council, code, identity), "expired")


def test_revoked_code_is_403(council: CouncilServer, tmp_path: Path) -> None:
    new = council.store.create_code(3600.0)
    council.store.revoke_code(new.id)
    identity = HubIdentity.generate(tmp_path)
    refused(council, 403, lambda: post_enroll(council, new.code, identity), "revoked")


def test_unknown_code_is_403(council: CouncilServer, tmp_path: Path) -> None:
    identity = HubIdentity.generate(tmp_path)
    refused(council, 403, lambda: post_enroll(council, "AAAA-BBBB-CCCC", identity), "unknown")


@pytest.mark.parametrize(
    "public_key",
    [
        "!" * 44,  # not base64
        base64.b64encode(b"\1" * 33)[:44].decode(),  # decodes to 33 bytes
        base64.b64encode(b"\1" * 32).decode()[:-1] + "A",  # bad padding / trailing bits
    ],
)
def test_malformed_public_key_is_422(council: CouncilServer, public_key: str) -> None:
    code = council.store.create_code(3600.0).code
    refused(council, 422, lambda: post_enroll(council, code, public_key), "public_key")


def test_key_already_enrolled_is_409(council: CouncilServer, hub_a: SignedHub) -> None:
    code = council.store.create_code(3600.0).code
    refused(council, 409, lambda: post_enroll(council, code, hub_a.identity))


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"code": 5}', b'{"code": "", "public_key": ""}'],
    ids=["not-json", "array", "wrong-types", "empty-strings"],
)
def test_malformed_enroll_request_is_422(council: CouncilServer, payload: bytes) -> None:
    refused(
        council,
        422,
        lambda: httpx.post(
            council.url + ENROLL_PATH,
            content=payload,
            headers={"Content-Type": "application/json"},
        ),
    )


# -- user tokens -----------------------------------------------------------------------------

READER_ENDPOINTS = [("GET", EVENTS_PATH), ("GET", FLEET_PATH), ("GET", "/v1/hubs/hub-x")]
ADMIN_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", CODES_PATH, {"expires_in_s": 3600}),
    ("GET", CODES_PATH, None),
    ("DELETE", f"{CODES_PATH}/1", None),
    ("POST", TOKENS_PATH, {"role": "admin", "name": "sneaky"}),
    ("GET", TOKENS_PATH, None),
    ("DELETE", f"{TOKENS_PATH}/1", None),
    ("PUT", "/v1/hubs/hub-x/config", {"config": {"checks": {}}}),
]
ALL_ENDPOINTS = [(m, p, None) for m, p in READER_ENDPOINTS] + ADMIN_ENDPOINTS


@pytest.mark.parametrize(("method", "path", "body"), ALL_ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer hrt_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer"],
    ids=["none", "unknown-token", "basic", "empty"],
)
def test_user_endpoints_without_a_valid_token_are_401(
    council: CouncilServer,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = refused(
        council,
        401,
        lambda: httpx.request(method, council.url + path, json=body, headers=headers),
    )
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_token_is_401(council: CouncilServer) -> None:
    new = council.store.create_token("admin", "soon revoked")
    client = council.client(new.token)
    assert client.get(FLEET_PATH).status_code == 200
    council.store.revoke_token(new.id)
    refused(council, 401, lambda: client.get(FLEET_PATH), "revoked")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_reader_on_admin_endpoints_is_403(
    council: CouncilServer, method: str, path: str, body: dict[str, Any] | None
) -> None:
    reader = council.client(council.store.create_token("reader", "read only").token)
    refused(council, 403, lambda: reader.request(method, path, json=body), "admin role")


def test_a_hub_signature_does_not_open_the_pull_api(
    council: CouncilServer, hub_a: SignedHub
) -> None:
    refused(council, 401, lambda: hub_a.get(EVENTS_PATH), "bearer")


def test_a_token_does_not_upload(council: CouncilServer, hub_a: SignedHub) -> None:
    body = batch_of(hub_a)
    admin = council.client(council.admin_token)
    send = lambda: admin.post(  # noqa: E731
        UPLOAD_PATH, content=body, headers={"Content-Type": CONTENT_TYPE}
    )
    refused(council, 401, send, "hub signature")


# -- text the database cannot store ----------------------------------------------------------


@pytest.mark.parametrize("text", ["\\u0000", "\\ud800"], ids=["nul", "lone-surrogate"])
def test_unstorable_text_in_json_is_422(
    council: CouncilServer, hub_a: SignedHub, tmp_path: Path, text: str
) -> None:
    """Valid JSON, valid for pydantic, refused by PostgreSQL or UTF-8: a 422, not a 500."""
    admin = council.client(council.admin_token)
    json_headers = {"Content-Type": "application/json"}
    config = f'{{"config": {{"checks": {{"x{text}": 1}}}}}}'.encode()
    refused(
        council,
        422,
        lambda: admin.put(f"/v1/hubs/{hub_a.hub_id}/config", content=config, headers=json_headers),
    )
    code = council.store.create_code(3600.0).code
    key = HubIdentity.generate(tmp_path).public_key_b64()
    enroll = f'{{"code": "{code}", "public_key": "{key}", "name": "a{text}"}}'.encode()
    refused(
        council,
        422,
        lambda: httpx.post(council.url + ENROLL_PATH, content=enroll, headers=json_headers),
    )
    note = f'{{"note": "{text}"}}'.encode()
    refused(council, 422, lambda: admin.post(CODES_PATH, content=note, headers=json_headers))


@pytest.mark.parametrize("hub_id", ["%00", "a%01b", "%ED%A0%80", "h%C3%A9"])
def test_hub_ids_outside_visible_ascii_are_422(council: CouncilServer, hub_id: str) -> None:
    admin = council.client(council.admin_token)
    refused(council, 422, lambda: admin.get(f"/v1/hubs/{hub_id}"))
    refused(council, 422, lambda: admin.get(f"{EVENTS_PATH}?hub={hub_id}"))


@pytest.mark.parametrize(
    ("seq", "event"),
    [
        (10_001, reading(sensor="lounge\x00climate")),
        (
            10_002,
            Alert(
                "x",
                Severity.URGENT,
                AlertState.RAISED,
                "hall",
                None,
                0.0,
                None,
                {"note": "\ud800"},
                reading().stamp,
            ),
        ),
        (10_003, SystemEvent(SystemKind.HUB_STARTED, {"k\x00": 1}, reading().stamp)),
    ],
    ids=["nul-in-sensor-id", "surrogate-in-evidence", "nul-in-details-key"],
)
def test_unstorable_text_in_a_batch_is_stored_replaced(
    council: CouncilServer, hub_a: SignedHub, seq: int, event: Event
) -> None:
    """A refusal would block the hub's outbox for ever (it retries a refused batch, alerts
    first): the council stores NUL and lone surrogates as U+FFFD, and a re-send is a
    duplicate, not a conflict."""
    body = hub_a.batch([(seq, event)])
    for new in (1, 0):
        answer = hub_a.post(body)
        assert answer.status_code == 200, answer.text
        ack = answer.json()
        assert (ack["new"], ack["held"], ack["conflicts"]) == (new, [[seq, seq]], [])
    (stored,) = [e for e in council.store.iter_events(hub_id=hub_a.hub_id) if e.seq == seq]
    text = json.dumps(stored.body)
    assert "\\ufffd" in text and "\\u0000" not in text and "\\ud800" not in text

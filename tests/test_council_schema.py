"""Property-based tests of the council's HTTP API, against the real app under uvicorn on 127.0.0.1.

1. Schemathesis over the app's own OpenAPI schema: every operation, each generated request
   sent three times (with whatever auth the generator chose, as an admin, as a reader), so
   the authenticated paths are exercised, not only the 401s. No answer may be a 5xx, and
   documented answers must match their schema and content type.
2. The signed hub endpoints, which a schema-driven tool cannot sign: a hand-written Hypothesis
   test that builds bodies and headers, signs them correctly (or breaks exactly one thing),
   and checks that the upload is never answered with a 5xx, that a request with one fault
   gets that fault's 4xx, that a refusal stores nothing, and that an acceptance
   acknowledges exactly the batch's sequence numbers.

Seeded (derandomised) and bounded: the module runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.events import (
    Alert,
    AlertState,
    Event,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from hub.identity import HubIdentity
from sync.codec import CONTENT_TYPE, decode_batch, encode_batch
from sync.council.store import CouncilStore
from sync.protocol import (
    CONFIG_PATH,
    HEADER_COUNCIL_TIME,
    MAX_BATCH_EVENTS,
    MAX_UPLOAD_BYTES,
    UPLOAD_PATH,
    UploadAck,
    from_ranges,
)
from sync.signing import sign_request
from tests.council_server import ENGINES, CouncilServer, engine_database, running_council

SCHEMA_EXAMPLES = 25  # per operation, on top of schemathesis' explicit and coverage cases
UPLOAD_EXAMPLES = 120


@dataclass(frozen=True)
class Actors:
    admin: str
    reader: str
    protected_token_ids: frozenset[int]  # ours: a generated DELETE must not revoke them
    hub_id: str
    identity: HubIdentity
    other_hub_id: str  # another enrolled hub, whose data ours must not write


@pytest.fixture(scope="module", params=ENGINES)
def council(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CouncilServer]:
    """The council on each engine: PostgreSQL refuses what SQLite lets by (over-long text,
    NUL, non-finite JSON numbers), so a missing check is a 5xx only there."""
    with (
        engine_database(request, tmp_path_factory.mktemp("council")) as url,
        running_council(url) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def actors(council: CouncilServer, tmp_path_factory: pytest.TempPathFactory) -> Actors:
    keys = tmp_path_factory.mktemp("keys")
    reader = council.store.create_token("reader", "fuzz-reader").token
    hub_id, identity = council.enroll(keys / "a", name="fuzz hub a")
    other_hub_id, _ = council.enroll(keys / "b", name="fuzz hub b")
    actors = Actors(
        admin=council.admin_token,
        reader=reader,
        protected_token_ids=frozenset(t.id for t in council.store.list_tokens()),
        hub_id=hub_id,
        identity=identity,
        other_hub_id=other_hub_id,
    )
    _REAL_HUB_IDS[:] = [hub_id, other_hub_id]
    # Something to pull and a fleet entry with health, so those answers are not all empty.
    events = [StoredEvent(seq, _reading(seq)) for seq in range(1, 51)]
    answer = _upload(council, actors, encode_batch(hub_id, events, _HEALTH))
    assert answer.status_code == 200, answer.text
    return actors


# -- 1. schemathesis over the OpenAPI schema --------------------------------------------------


def _openapi_document() -> dict[str, Any]:
    """The schema the council serves, built from its routes when this module is imported,
    since schemathesis parametrizes at collection; the test below checks it is exactly what
    /openapi.json serves. (schemathesis' lazy `from_fixture` would load it from the running
    server, but it breaks on pytest 9: it sets a private `_nodeid` pytest no longer has.)"""
    from sync.council.app import create_app

    with tempfile.TemporaryDirectory() as d:
        store = CouncilStore.open(f"sqlite:///{Path(d) / 'schema.db'}")
        try:
            document: dict[str, Any] = create_app(store).openapi()
        finally:
            store.close()
    return document


_REAL_HUB_IDS: list[str] = []  # filled by the `actors` fixture, read while generating
schema = schemathesis.openapi.from_dict(_openapi_document())
# The upload body is opaque bytes to a schema: send what is generated as it is.
schemathesis.serializer.alias(CONTENT_TYPE, "application/octet-stream")


@schema.hook
def flatmap_path_parameters(_ctx: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Random hub ids only ever find nothing: half the time, ask about enrolled hubs."""
    if not path_parameters or "hub_id" not in path_parameters or not _REAL_HUB_IDS:
        return st.just(path_parameters)
    real = st.sampled_from(_REAL_HUB_IDS)
    return st.just(path_parameters) | real.map(lambda hub: {**path_parameters, "hub_id": hub})


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
# The role each bearer-token operation needs (the schema says "bearer", not which role).
ADMIN_ONLY = {
    ("GET", "/v1/enrollment-codes"),
    ("POST", "/v1/enrollment-codes"),
    ("DELETE", "/v1/enrollment-codes/{code_id}"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{token_id}"),
    ("PUT", "/v1/hubs/{hub_id}/config"),
}
READER = {("GET", "/v1/hubs/{hub_id}"), ("GET", "/v1/fleet"), ("GET", "/v1/events")}


def test_the_fuzzed_schema_is_the_served_one(http: httpx.Client) -> None:
    answer = http.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == json.loads(json.dumps(_openapi_document()))
    bearer = {
        (method.upper(), path)
        for path, operations in answer.json()["paths"].items()
        for method, operation in operations.items()
        if {"BearerToken": []} in operation.get("security", [])
    }
    assert bearer == ADMIN_ONLY | READER  # the role tables below cover every operation


@schema.parametrize()
@settings(
    max_examples=SCHEMA_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(
    case: Any, council: CouncilServer, actors: Actors
) -> None:
    operation = (case.method.upper(), case.operation.path)
    if operation == ("DELETE", "/v1/tokens/{token_id}"):
        # Revoking our own tokens would turn the rest of the run into 401s.
        assume(_int_or_none(case.path_parameters.get("token_id")) not in actors.protected_token_ids)
    response = case.call(base_url=council.url)  # with whatever auth was generated, or none
    case.validate_response(response, checks=CHECKS)
    assert HEADER_COUNCIL_TIME.lower() in response.headers  # schemathesis lower-cases names
    if case.headers:  # ours replace the generated credentials, whatever their spelling
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "authorization"}
    for role, token in (("admin", actors.admin), ("reader", actors.reader)):
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(base_url=council.url, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert HEADER_COUNCIL_TIME.lower() in response.headers
        # A valid token is never "unknown", and a reader is refused the admin's part only.
        # (Unless schemathesis dropped the header: its "missing parameter" cases do.)
        sent = response.request.headers.get("Authorization")
        if operation in ADMIN_ONLY | READER and sent == headers["Authorization"]:
            assert response.status_code != 401, (role, response.text)
            if role == "reader" and operation in ADMIN_ONLY:
                # FastAPI parses a JSON body before it runs the auth dependency: a body that
                # is not JSON at all is a 422 for anyone; nothing else may pass.
                assert response.status_code in (403, 422), (role, response.text)
            else:
                assert response.status_code != 403, (role, response.text)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- 2. the signed upload, fuzzed and correctly signed ---------------------------------------

_HEALTH: dict[str, Any] = {
    "software_version": "fuzz",
    "uptime_s": 12.5,
    "queue_depth": 3,
    "disk_free_bytes": 10**9,
    "clock_synced": True,
    "sensors": {
        "s1": {
            "room": "hall",
            "kind": "climate",
            "last_seen": 1.7e9,
            "battery": 80.0,
            "silent": False,
        }
    },
}


def _reading(seq: int) -> Reading:
    return Reading("s1", Quantity.TEMPERATURE, 20.0 + seq / 100, Stamp(1.7e9 + seq, True, seq))


def _upload(council: CouncilServer, actors: Actors, body: bytes, **kwargs: Any) -> httpx.Response:
    headers = sign_request(actors.identity, actors.hub_id, "POST", UPLOAD_PATH, body, time.time())
    headers["Content-Type"] = CONTENT_TYPE
    return httpx.post(
        council.url + UPLOAD_PATH, content=body, headers=headers, timeout=30, **kwargs
    )


any_float = st.floats(allow_nan=True, allow_infinity=True)
sane_float = st.floats(-1e12, 1e12, allow_nan=False)
any_text = st.text(max_size=40)
# What the council stores on both engines: PostgreSQL refuses NUL in text and JSONB, and a
# lone surrogate is not Unicode (`exclude_characters` alone lets category Cs through; the
# hub's encoder refuses one in a text field, but JSON details carry it as "\\ud800").
sane_text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=20
)


def _json_values(floats: st.SearchStrategy[float], texts: st.SearchStrategy[str]) -> Any:
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | floats | texts
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    )


def _events(floats: st.SearchStrategy[float], texts: st.SearchStrategy[str]) -> Any:
    json_objects = st.dictionaries(texts, _json_values(floats, texts), max_size=4)
    stamps = st.builds(Stamp, floats, st.booleans(), floats)
    readings = st.builds(Reading, texts, st.sampled_from(list(Quantity)), floats, stamps)
    alerts = st.builds(
        Alert,
        texts,
        st.sampled_from(list(Severity)),
        st.sampled_from(list(AlertState)),
        texts,
        st.none() | texts,
        floats,
        st.none() | floats,
        json_objects,
        stamps,
    )
    systems = st.builds(SystemEvent, st.sampled_from(list(SystemKind)), json_objects, stamps)
    return readings | alerts | systems


@st.composite
def batch_events(draw: st.DrawFn, sane: bool) -> list[StoredEvent]:
    """Events with distinct seqs; `sane` ones are what a working hub makes (finite numbers,
    short NUL-free text), the others anything the codec carries (NaN, NUL, long ids, seqs
    past 2**63)."""
    if sane:
        events: list[Event] = draw(st.lists(_events(sane_float, sane_text), max_size=20))
    else:
        events = draw(st.lists(_events(any_float, any_text), max_size=20))
    seq_range = st.integers(1, 200) if sane else st.integers(0, 2**64)
    seqs = draw(st.lists(seq_range, min_size=len(events), max_size=len(events), unique=True))
    return [StoredEvent(s, e) for s, e in zip(seqs, events, strict=True)]


_any_json = _json_values(any_float, any_text)
health_reports = (
    st.just(_HEALTH)
    | st.dictionaries(any_text, _any_json, max_size=4)
    | st.fixed_dictionaries(
        {}, optional={"queue_depth": _any_json, "clock_synced": _any_json, "sensors": _any_json}
    )
)


@dataclass(frozen=True)
class Upload:
    body: bytes
    content_type: str | None
    content_encoding: str | None
    signing: str  # how it is signed: "ok" or the one thing wrong with it
    query: str
    expect: int | None  # the one status a correct council must give, None when several fit


CONTENT_TYPES = {
    CONTENT_TYPE: True,
    None: False,
    "application/json": False,
    "application/octet-stream": False,
    "text/plain": False,
}
ENCODINGS = {None: True, "identity": True, "gzip": False, "br": False, "x-unheard-of": False}
SIGNINGS = [
    "ok",
    "ok",
    "ok",
    "stale",
    "future",
    "other_hub",
    "unknown_hub",
    "other_body",
    "unsigned",
    "garbage_signature",
]


@st.composite
def uploads(draw: st.DrawFn, hub_id: str, other_hub_id: str) -> Upload:
    # Each shape twice but the 1 MiB one, which costs most and has the least to vary.
    shapes = ["sane", "wild", "other_hub", "bytes", "corrupt"] * 2 + ["oversized"]
    shape = draw(st.sampled_from(shapes))
    expect: int | None
    if shape in ("sane", "wild", "other_hub", "corrupt"):
        events = draw(batch_events(sane=shape == "sane"))
        health = draw(health_reports) if shape == "wild" else _HEALTH
        try:
            body = encode_batch(other_hub_id if shape == "other_hub" else hub_id, events, health)
        except (ValueError, TypeError):
            assume(False)  # the hub's own encoder refuses it: no hub can send it
            raise
        expect = {"sane": 200, "other_hub": 403, "wild": None}.get(shape)
        if shape == "corrupt":
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
            body = body[: draw(st.integers(0, len(body)))]
            expect = _decodes_as(body, hub_id)
    elif shape == "bytes":
        body = draw(st.binary(max_size=400))
        expect = _decodes_as(body, hub_id)
    else:
        body = bytes(MAX_UPLOAD_BYTES + 1)
        expect = 413
    content_type = draw(st.sampled_from(list(CONTENT_TYPES)))
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    signing = draw(st.sampled_from(SIGNINGS))
    query = draw(st.sampled_from(["", "?a=1", "?x=%20y&z"]))
    faults = [
        *([] if CONTENT_TYPES[content_type] else [415]),
        *([] if ENCODINGS[encoding] else [415]),
        *([] if signing == "ok" else [401]),
    ]
    if expect == 413:
        # Refused on its size before the signature is looked at; the media type may be
        # looked at first, so with a 415 fault either answer is right.
        expect = 413 if 415 not in faults else None
    elif faults:
        expect = faults[0] if len(faults) == 1 else None
    return Upload(body, content_type, encoding, signing, query, expect)


def _decodes_as(body: bytes, hub_id: str) -> int | None:
    """The status a body that only decoding can judge must get; None when the store decides."""
    try:
        batch = decode_batch(body, max_events=MAX_BATCH_EVENTS)
    except ValueError:
        return 422
    return None if batch.hub_id == hub_id else 403


def _describe(upload: Upload) -> str:
    return (
        f"{len(upload.body)}-byte body, Content-Type {upload.content_type!r}, Content-Encoding "
        f"{upload.content_encoding!r}, signing {upload.signing!r}, query {upload.query!r}"
    )


def _headers(upload: Upload, actors: Actors, path: str) -> dict[str, str]:
    now = time.time()
    hub, body = actors.hub_id, upload.body
    match upload.signing:
        case "stale":
            now -= 3600
        case "future":
            now += 3600
        case "other_hub":
            hub = actors.other_hub_id  # signed with our key: another hub's id is not ours
        case "unknown_hub":
            hub = "hub-unknownunknow"
        case "other_body":
            body = body + b"x"
    headers = sign_request(actors.identity, hub, "POST", path, body, now)
    if upload.signing == "unsigned":
        headers = {}
    elif upload.signing == "garbage_signature":
        headers["X-Hearth-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    if upload.content_type is not None:
        headers["Content-Type"] = upload.content_type
    if upload.content_encoding is not None:
        headers["Content-Encoding"] = upload.content_encoding
    return headers


@pytest.fixture(scope="module")
def http(council: CouncilServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=council.url, timeout=30) as client:
        yield client


@given(data=st.data())
@settings(
    max_examples=UPLOAD_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_signed_upload_is_never_a_server_error(
    data: st.DataObject, council: CouncilServer, actors: Actors, http: httpx.Client
) -> None:
    upload = data.draw(uploads(actors.hub_id, actors.other_hub_id))
    path = UPLOAD_PATH + upload.query
    before = council.store.count_events()
    try:
        response = http.post(path, content=upload.body, headers=_headers(upload, actors, path))
    except httpx.TransportError as exc:
        # The contract promises an answer: a refusal the hub never reads looks like a network
        # fault to it, and it would retry a request that can never succeed.
        pytest.fail(f"no answer ({exc!r}) to {_describe(upload)}")
    stored = council.store.count_events() - before

    assert response.status_code < 500, response.text
    assert math.isfinite(float(response.headers[HEADER_COUNCIL_TIME]))
    if upload.expect is not None:
        assert response.status_code == upload.expect, (upload.signing, response.text)
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert isinstance(response.json()["detail"], str)
        assert stored == 0
        return
    ack = UploadAck.model_validate(response.json())
    seqs = {e.seq for e in decode_batch(upload.body, max_events=MAX_BATCH_EVENTS).events}
    held, conflicts = set(from_ranges(ack.held)), set(from_ranges(ack.conflicts))
    assert held | conflicts == seqs and not held & conflicts
    assert ack.new == stored and ack.new + ack.duplicates == len(held)
    assert ack.high_water >= max(seqs, default=0)


def test_config_fetch_is_signed_and_never_a_server_error(
    council: CouncilServer, actors: Actors, http: httpx.Client
) -> None:
    def get(identity: HubIdentity, hub: str, now: float) -> httpx.Response:
        headers = sign_request(identity, hub, "GET", CONFIG_PATH, b"", now)
        return http.get(CONFIG_PATH, headers=headers)

    assert get(actors.identity, actors.hub_id, time.time()).status_code == 200
    assert get(actors.identity, actors.hub_id, time.time() - 3600).status_code == 401
    assert get(actors.identity, actors.other_hub_id, time.time()).status_code == 401
    assert http.get(CONFIG_PATH).status_code == 401


def test_a_hub_header_given_twice_is_refused(
    council: CouncilServer, actors: Actors, http: httpx.Client
) -> None:
    """Two X-Hearth-Hub values: verifying one while a later reader uses the other would let a
    hub pass as itself and write as another, so such a request is refused outright."""
    body = encode_batch(actors.hub_id, [StoredEvent(10_000, _reading(1))], _HEALTH)
    headers = sign_request(actors.identity, actors.hub_id, "POST", UPLOAD_PATH, body, time.time())
    pairs = [
        *headers.items(),
        ("X-Hearth-Hub", actors.other_hub_id),
        ("Content-Type", CONTENT_TYPE),
    ]
    before = council.store.count_events()
    response = http.post(UPLOAD_PATH, content=body, headers=pairs)
    assert response.status_code == 401, response.text
    assert council.store.count_events() == before

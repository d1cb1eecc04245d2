"""The council's API does what the wire contract says, over real HTTP on SQLite.

Enrollment and codes, tokens, upload acknowledgements (held, conflicts, high water), the pull
API's paging and filters, the fleet view, config changes reaching the hub, the OpenAPI
schema, the 500 path, and that a slow database call does not block the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.events import Quantity
from hub.identity import HubIdentity
from sync.council.api import event_record
from sync.protocol import (
    CODES_PATH,
    CONFIG_PATH,
    ENROLL_PATH,
    EVENTS_PATH,
    FLEET_PATH,
    HEADER_COUNCIL_TIME,
    HEALTH_PATH,
    TOKENS_PATH,
    EnrollResponse,
    HubConfig,
    UploadAck,
)
from tests.council_server import (
    CouncilServer,
    SignedHub,
    running_council,
)
from tests.factories import T0, alert, reading, system

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def council(council_db_url: str) -> Iterator[CouncilServer]:
    with running_council(council_db_url) as server:
        yield server
        assert server.app.state.unexpected_errors == 0


def ack(answer: httpx.Response) -> UploadAck:
    assert answer.status_code == 200, answer.text
    return UploadAck.model_validate(answer.json())


def test_health_and_council_time(council: CouncilServer) -> None:
    before = time.time()
    answer = httpx.get(council.url + HEALTH_PATH)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
    assert before - 1 <= float(answer.headers[HEADER_COUNCIL_TIME]) <= time.time() + 1
    # Refusals carry it too (the hub signs with council time after a refusal).
    assert HEADER_COUNCIL_TIME in httpx.get(council.url + "/v1/nowhere").headers


# -- enrollment codes and enrollment ---------------------------------------------------------


def test_code_lifecycle_over_the_api(council: CouncilServer, tmp_path: Path) -> None:
    admin = council.client(council.admin_token)
    made = admin.post(CODES_PATH, json={"expires_in_s": 600, "note": "flat 12"})
    assert made.status_code == 201, made.text
    code = made.json()
    assert set(code) == {"id", "code", "expires_at", "note"}
    assert code["note"] == "flat 12"
    assert time.time() + 590 < code["expires_at"] < time.time() + 610

    listed = {c["id"]: c for c in admin.get(CODES_PATH).json()}
    assert listed[code["id"]]["state"] == "unused"
    assert "code" not in listed[code["id"]]  # shown only once

    identity = HubIdentity.generate(tmp_path)
    enrolled = httpx.post(
        council.url + ENROLL_PATH,
        json={
            "code": code["code"].lower().replace("-", " "),  # as someone might type it
            "public_key": identity.public_key_b64(),
            "name": "flat 12",
            "software_version": "0.1.0",
        },
    )
    assert enrolled.status_code == 201, enrolled.text
    answer = EnrollResponse.model_validate(enrolled.json())
    assert answer.hub_id.startswith("hub-")
    assert answer.config_version == 1

    listed = {c["id"]: c for c in admin.get(CODES_PATH).json()}
    assert listed[code["id"]]["state"] == "used"
    assert listed[code["id"]]["hub_id"] == answer.hub_id
    assert admin.delete(f"{CODES_PATH}/{code['id']}").status_code == 409  # used: too late

    other = admin.post(CODES_PATH, json={}).json()  # defaults: 24 h, no note
    assert other["expires_at"] > time.time() + 86000
    assert admin.delete(f"{CODES_PATH}/{other['id']}").status_code == 204
    listed = {c["id"]: c for c in admin.get(CODES_PATH).json()}
    assert listed[other["id"]]["state"] == "revoked"
    assert admin.delete(f"{CODES_PATH}/999999").status_code == 404


@pytest.mark.parametrize("expires_in_s", [59, 30 * 86400 + 1, "soon"])
def test_code_expiry_out_of_range_is_422(council: CouncilServer, expires_in_s: Any) -> None:
    answer = council.client(council.admin_token).post(
        CODES_PATH, json={"expires_in_s": expires_in_s}
    )
    assert answer.status_code == 422
    assert "expires_in_s" in answer.json()["detail"]


def test_one_code_enrolls_one_hub_under_concurrent_requests(
    council: CouncilServer, tmp_path: Path
) -> None:
    code = council.store.create_code(3600.0).code
    keys = [HubIdentity.generate(tmp_path / str(i)).public_key_b64() for i in range(8)]
    barrier = threading.Barrier(len(keys))

    def attempt(key: str) -> int:
        with httpx.Client(base_url=council.url) as client:
            barrier.wait(timeout=30)
            return client.post(ENROLL_PATH, json={"code": code, "public_key": key}).status_code

    with ThreadPoolExecutor(len(keys)) as pool:
        statuses = sorted(pool.map(attempt, keys))
    assert statuses == [201] + [403] * (len(keys) - 1)
    assert len(council.store.fleet()) == 1


# -- tokens ----------------------------------------------------------------------------------


def test_token_lifecycle_over_the_api(council: CouncilServer) -> None:
    admin = council.client(council.admin_token)
    made = admin.post(TOKENS_PATH, json={"role": "reader", "name": "analyst"})
    assert made.status_code == 201, made.text
    token = made.json()
    assert token["token"].startswith("hrt_")
    assert token["role"] == "reader"

    reader = council.client(token["token"])
    assert reader.get(FLEET_PATH).status_code == 200
    assert reader.get(TOKENS_PATH).status_code == 403

    listed = {t["id"]: t for t in admin.get(TOKENS_PATH).json()}
    assert "token" not in listed[token["id"]]
    assert listed[token["id"]]["last_used_at"] is not None
    assert listed[token["id"]]["revoked_at"] is None

    assert admin.delete(f"{TOKENS_PATH}/{token['id']}").status_code == 204
    assert reader.get(FLEET_PATH).status_code == 401
    assert admin.get(TOKENS_PATH).json()[-1]["revoked_at"] is not None
    assert admin.delete(f"{TOKENS_PATH}/999999").status_code == 404
    bad_role = admin.post(TOKENS_PATH, json={"role": "root", "name": "x"})
    assert bad_role.status_code == 422


# -- upload acknowledgements -----------------------------------------------------------------


def test_upload_acknowledges_held_conflicts_and_high_water(
    council: CouncilServer, tmp_path: Path
) -> None:
    hub = council.enroll_hub(tmp_path)
    first = ack(hub.post(hub.batch([(1, reading(1)), (2, reading(2)), (5, alert(5))])))
    assert (first.new, first.duplicates, first.held) == (3, 0, [(1, 2), (5, 5)])
    assert (first.conflicts, first.high_water, first.config_version) == ([], 5, 1)

    # seq 2 again with different content (a hub whose SD card lost commits): not stored,
    # named as a conflict; seq 1 again is a plain duplicate; seq 3 is new.
    second = ack(
        hub.post(hub.batch([(1, reading(1)), (2, reading(2, value=99.0)), (3, reading(3))]))
    )
    assert (second.new, second.duplicates) == (1, 1)
    assert second.held == [(1, 1), (3, 3)]
    assert second.conflicts == [(2, 2)]
    assert second.high_water == 5
    assert council.store.count_events() == 4
    value = [e.value for e in council.store.iter_events() if e.seq == 2]
    assert value == [20.0]  # never overwritten


# -- pull API --------------------------------------------------------------------------------


def fill(council: CouncilServer, tmp_path: Path) -> tuple[SignedHub, SignedHub]:
    """Two hubs, three batches, interleaved: 12 events of all kinds over 11 seconds."""
    a = council.enroll_hub(tmp_path / "a")
    b = council.enroll_hub(tmp_path / "b")
    ack(a.post(a.batch([(1, reading(0)), (2, reading(1)), (3, alert(2)), (4, system(3))])))
    ack(b.post(b.batch([(1, reading(4)), (2, alert(5)), (3, reading(6)), (4, reading(7))])))
    ack(a.post(a.batch([(5, reading(8)), (6, reading(9)), (7, system(10)), (8, alert(11))])))
    return a, b


def pages(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow next_cursor to the end: (every event, number of requests)."""
    out: list[dict[str, Any]] = []
    after, requests = 0, 0
    while True:
        answer = client.get(EVENTS_PATH, params={**params, "after": after})
        assert answer.status_code == 200, answer.text
        requests += 1
        page = answer.json()
        out.extend(page["events"])
        assert page["next_cursor"] >= after
        after = page["next_cursor"]
        if not page["more"]:
            return out, requests


def test_pull_api_pages_in_ingest_order(council: CouncilServer, tmp_path: Path) -> None:
    a, b = fill(council, tmp_path)
    reader = council.client(council.store.create_token("reader", "r").token)
    events, requests = pages(reader, limit=5)
    assert requests == 3
    assert [e["cursor"] for e in events] == sorted(e["cursor"] for e in events)
    assert [(e["hub_id"], e["seq"]) for e in events] == (
        [(a.hub_id, s) for s in range(1, 5)]
        + [(b.hub_id, s) for s in range(1, 5)]
        + [(a.hub_id, s) for s in range(5, 9)]
    )
    first = events[0]
    assert first["kind"] == "reading"
    assert first["quantity"] == Quantity.TEMPERATURE.value
    assert first["wall_time"] == T0
    assert first["body"]["seq"] == 1 and first["body"]["unit"] == "°C"
    assert first == event_record(next(council.store.iter_events()))

    # Nothing new: the last cursor answers an empty page, and stays put.
    last = events[-1]["cursor"]
    empty = reader.get(EVENTS_PATH, params={"after": last}).json()
    assert empty == {"events": [], "next_cursor": last, "more": False}


def test_pull_api_filters(council: CouncilServer, tmp_path: Path) -> None:
    a, b = fill(council, tmp_path)
    reader = council.client(council.admin_token)

    only_b, _ = pages(reader, hub=b.hub_id, limit=2)
    assert [(e["hub_id"], e["seq"]) for e in only_b] == [(b.hub_id, s) for s in range(1, 5)]

    alerts, _ = pages(reader, kind="alert", limit=1)
    assert [(e["hub_id"], e["seq"]) for e in alerts] == [
        (a.hub_id, 3),
        (b.hub_id, 2),
        (a.hub_id, 8),
    ]

    # since <= wall_time < until, as Unix seconds or ISO 8601 (UTC without an offset).
    window, _ = pages(reader, since=str(T0 + 4), until=str(T0 + 8))
    assert [e["wall_time"] - T0 for e in window] == [4, 5, 6, 7]
    iso, _ = pages(reader, since="2025-11-28T08:00:04", until="2025-11-28T09:00:08+01:00")
    assert iso == window

    # A filter that matches nothing still moves the cursor past what it scanned.
    none = reader.get(EVENTS_PATH, params={"hub": "hub-nobody", "limit": 3}).json()
    assert none["events"] == [] and not none["more"]
    assert none["next_cursor"] == council.store.count_events()


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 10_001},
        {"after": -1},
        {"kind": "everything"},
        {"since": "yesterday"},
        {"until": "2025-02-31"},
        {"since": "1e400"},
        {"hub": ""},
    ],
)
def test_pull_api_bad_query_is_422(council: CouncilServer, params: dict[str, Any]) -> None:
    answer = council.client(council.admin_token).get(EVENTS_PATH, params=params)
    assert answer.status_code == 422, answer.text
    (name,) = params
    assert name in answer.json()["detail"]


# -- fleet and config ------------------------------------------------------------------------


def test_fleet_shows_health_silent_sensors_and_low_batteries(
    council: CouncilServer, tmp_path: Path
) -> None:
    hub = council.enroll_hub(tmp_path, name="flat 3")
    now = time.time()
    health = {
        "software_version": "0.2.0",
        "uptime_s": 3600.5,
        "queue_depth": 42,
        "disk_free_bytes": 10**9,
        "clock_synced": True,
        "config_version": 1,
        "sensors": {
            "lounge": {"room": "lounge", "kind": "climate", "last_seen": now - 60, "battery": 80},
            "hall": {"room": "hall", "kind": "motion", "last_seen": now - 7 * 3600},
            "door": {"room": "hall", "kind": "contact", "last_seen": now, "silent": True},
            "bath": {"room": "bathroom", "kind": "leak", "last_seen": now, "battery": 9.5},
        },
        "something_newer": {"ignored": True},
    }
    ack(hub.post(hub.batch([(1, reading())], health=health)))

    reader = council.client(council.store.create_token("reader", "r").token)
    fleet = reader.get(FLEET_PATH)
    assert fleet.status_code == 200
    (entry,) = fleet.json()["hubs"]
    assert entry == reader.get(f"/v1/hubs/{hub.hub_id}").json()
    assert entry["hub_id"] == hub.hub_id and entry["name"] == "flat 3"
    assert entry["software_version"] == "0.2.0"
    assert (entry["queue_depth"], entry["uptime_s"]) == (42, 3600.5)
    assert entry["disk_free_bytes"] == 10**9 and entry["clock_synced"] is True
    assert (entry["high_water"], entry["events_held"], entry["config_version"]) == (1, 1, 1)
    assert now - 5 < entry["last_contact"] < time.time() + 1
    assert 0 <= entry["clock_offset_s"] < 5  # signed this second, floor of the timestamp
    assert {s["sensor_id"] for s in entry["silent_sensors"]} == {"hall", "door"}
    assert entry["low_batteries"] == [{"sensor_id": "bath", "room": "bathroom", "battery": 9.5}]
    assert reader.get("/v1/hubs/hub-nobody").status_code == 404


def test_config_change_reaches_the_hub(council: CouncilServer, tmp_path: Path) -> None:
    hub = council.enroll_hub(tmp_path)
    before = HubConfig.model_validate(hub.get(CONFIG_PATH).json())
    assert before.config_version == 1

    admin = council.client(council.admin_token)
    new = {"checks": {"cold_home": {"warning_c": 19.0}}, "sync": {"interval_s": 120}}
    put = admin.put(f"/v1/hubs/{hub.hub_id}/config", json={"config": new})
    assert put.status_code == 200, put.text
    assert put.json() == {"config_version": 2, "config": new}

    assert ack(hub.post(hub.batch([(1, reading())]))).config_version == 2
    fetched = hub.get(CONFIG_PATH)
    assert fetched.status_code == 200
    assert fetched.json() == {"config_version": 2, "config": new}

    assert admin.put("/v1/hubs/hub-nobody/config", json={"config": new}).status_code == 404
    not_tables = admin.put(f"/v1/hubs/{hub.hub_id}/config", json={"config": {"sync": 5}})
    assert not_tables.status_code == 422
    assert hub.get(CONFIG_PATH).json()["config_version"] == 2


# -- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_lists_every_endpoint_with_models_and_security(council: CouncilServer) -> None:
    schema = httpx.get(council.url + "/openapi.json").json()
    operations = {
        (method.upper(), path): op
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert set(operations) == {
        ("GET", "/v1/health"),
        ("POST", "/v1/enroll"),
        ("POST", "/v1/upload"),
        ("GET", "/v1/config"),
        ("POST", "/v1/enrollment-codes"),
        ("GET", "/v1/enrollment-codes"),
        ("DELETE", "/v1/enrollment-codes/{code_id}"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/tokens"),
        ("DELETE", "/v1/tokens/{token_id}"),
        ("PUT", "/v1/hubs/{hub_id}/config"),
        ("GET", "/v1/hubs/{hub_id}"),
        ("GET", "/v1/fleet"),
        ("GET", "/v1/events"),
    }
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerToken"]["description"],
    }
    assert schemes["HubSignature"]["in"] == "header"
    assert "X-Hearth-Timestamp" in schemes["HubSignature"]["description"]

    def success(op: dict[str, Any]) -> dict[str, Any]:
        code = next(c for c in op["responses"] if c.startswith("2"))
        return dict(op["responses"][code])

    for (method, path), op in operations.items():
        for code, response in op["responses"].items():
            assert HEADER_COUNCIL_TIME in response["headers"], (method, path, code)
            if code.startswith("4"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, code)
        if path in ("/v1/upload", "/v1/config"):
            assert op["security"] == [{"HubSignature": []}]
        elif path not in ("/v1/health", "/v1/enroll"):
            assert op["security"] == [{"BearerToken": []}], (method, path)
        if method != "DELETE":
            assert "application/json" in success(op)["content"], (method, path)

    upload = operations[("POST", "/v1/upload")]
    assert "application/vnd.hearth.batch" in upload["requestBody"]["content"]
    assert success(upload)["content"]["application/json"]["schema"]["$ref"].endswith("/UploadAck")
    assert {"401", "403", "413", "415", "422"} <= set(upload["responses"])
    params = {p["name"]: p["schema"] for p in operations[("GET", "/v1/events")]["parameters"]}
    assert params["limit"]["maximum"] == 10_000 and params["limit"]["minimum"] == 1
    assert params["after"]["minimum"] == 0
    assert params["kind"]["anyOf"][0]["enum"] == ["reading", "alert", "system"]
    assert "pattern" in params["since"]["anyOf"][0]
    assert httpx.get(council.url + "/docs").status_code == 200


# -- the 500 path and the event loop ---------------------------------------------------------


def test_unexpected_error_is_a_bare_500_with_a_request_id(
    council: CouncilServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(council.store, "fleet", broken)
    answer = council.client(council.admin_token).get(FLEET_PATH)
    assert answer.status_code == 500
    request_id = answer.headers["X-Request-ID"]
    assert answer.json() == {"detail": f"internal error; quote request id {request_id}"}
    assert HEADER_COUNCIL_TIME in answer.headers
    assert "secret" not in answer.text
    assert any(request_id in r.getMessage() and r.exc_info is not None for r in caplog.records)
    assert council.app.state.unexpected_errors == 1
    council.app.state.unexpected_errors = 0  # the fixture checks the rest of the test


def test_a_slow_database_call_does_not_block_other_requests(
    council: CouncilServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's calls run in the threadpool: while one waits, others are answered."""
    entered, release = threading.Event(), threading.Event()
    real_fleet = council.store.fleet

    def slow_fleet(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        return real_fleet(*args, **kwargs)

    monkeypatch.setattr(council.store, "fleet", slow_fleet)
    admin = council.client(council.admin_token)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(admin.get, FLEET_PATH)
        assert entered.wait(30)
        try:
            assert httpx.get(council.url + HEALTH_PATH, timeout=5).status_code == 200
            assert admin.get(EVENTS_PATH, timeout=5).status_code == 200
            assert not pending.done()
        finally:
            release.set()
        assert pending.result(30).status_code == 200


def test_undecodable_json_is_422_and_405_lists_every_method(council: CouncilServer) -> None:
    admin = council.client(council.admin_token)
    answer = admin.post(
        TOKENS_PATH, content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422 and "JSON" in answer.json()["detail"]
    wrong_method = admin.request("PATCH", TOKENS_PATH)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, POST"
    assert isinstance(wrong_method.json()["detail"], str)

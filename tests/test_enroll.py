"""Enrollment on the hub: the key is made here and never leaves; each refusal says what to do;
no failure leaves the installer stuck. A stand-in council (httpx.MockTransport) for the
refusal paths, the real council service over loopback for the end-to-end ones."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.identity import KEY_FILENAME, HubIdentity
from sync.enroll import RECORD_FILENAME, EnrollError, enroll
from sync.protocol import ENROLL_PATH, EnrollRequest
from tests.council_server import running_council

URL = "https://council.test"
CODE = "ABCD-EFGH-JKMN"


class StandIn:
    """POST /v1/enroll as the contract says; `answer` can be replaced to refuse."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.keys: set[str] = set()
        self.answer: Callable[[EnrollRequest], httpx.Response] = self.accept

    def accept(self, request: EnrollRequest) -> httpx.Response:
        if request.public_key in self.keys:
            return httpx.Response(409, json={"detail": "this public key is already enrolled"})
        self.keys.add(request.public_key)
        body = {
            "hub_id": f"hub-{len(self.keys):012d}",
            "config_version": 1,
            "config": {"report": {"heartbeat_min": 20.0}},
        }
        return httpx.Response(201, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.method == "POST" and request.url.path == ENROLL_PATH
        return self.answer(EnrollRequest.model_validate_json(request.content))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def sent_key(self, i: int = -1) -> str:
        return str(json.loads(self.requests[i].content)["public_key"])


def refuse(status: int, detail: str) -> Callable[[EnrollRequest], httpx.Response]:
    return lambda _request: httpx.Response(status, json={"detail": detail})


def key_secrets(data_dir: Path) -> list[bytes]:
    """Every form the private key could leak in: the PEM, its base64 body, the raw 32 bytes
    and their base64 and hex."""
    pem = (data_dir / KEY_FILENAME).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return [pem, body, raw, base64.b64encode(raw), raw.hex().encode()]


def test_enroll_makes_a_private_key_and_sends_only_the_public_half(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    council = StandIn()
    with caplog.at_level(logging.DEBUG):  # httpx and httpcore log at DEBUG too
        answer = enroll(URL, CODE, tmp_path, name="Flat 3", transport=council.transport())
    assert answer.hub_id == "hub-000000000001" and answer.config_version == 1
    key_file = tmp_path / KEY_FILENAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    identity = HubIdentity.load(tmp_path)
    sent = json.loads(council.requests[0].content)
    assert sent["public_key"] == identity.public_key_b64()
    assert sent["code"] == CODE and sent["name"] == "Flat 3" and sent["software_version"]
    # The private key in no form in any request, any log line or the record file.
    everything = [
        r.content + str(r.headers).encode() + str(r.url).encode() for r in council.requests
    ]
    everything += [r.getMessage().encode() for r in caplog.records]
    everything.append((tmp_path / RECORD_FILENAME).read_bytes())
    for secret in key_secrets(tmp_path):
        assert not any(secret in blob for blob in everything)


def test_a_used_or_expired_code_is_refused_with_the_councils_reason(tmp_path: Path) -> None:
    council = StandIn()
    council.answer = refuse(403, "enrollment code expired at 2025-11-28T08:00:00Z")
    with pytest.raises(EnrollError) as refused:
        enroll(URL, CODE, tmp_path, transport=council.transport())
    message = str(refused.value)
    assert "expired at 2025-11-28T08:00:00Z" in message and "new code" in message
    # The key stays, unused: the next attempt (with a new code) sends the same one.
    first_key = council.sent_key()
    council.answer = council.accept
    enroll(URL, "NEW0-CODE-0000", tmp_path, transport=council.transport())
    assert council.sent_key() == first_key


def test_an_already_enrolled_key_says_how_to_go_on(tmp_path: Path) -> None:
    council = StandIn()
    council.answer = refuse(409, "this public key is already enrolled")
    with pytest.raises(EnrollError, match=r"already has this hub's key.*--force"):
        enroll(URL, CODE, tmp_path, transport=council.transport())


@pytest.mark.parametrize(
    ("status", "words"),
    [(422, "could not accept"), (404, "is this the council's address"), (500, "answered 500")],
)
def test_other_answers_are_reported_plainly(tmp_path: Path, status: int, words: str) -> None:
    council = StandIn()
    council.answer = refuse(status, "something")
    with pytest.raises(EnrollError, match=words):
        enroll(URL, CODE, tmp_path, transport=council.transport())


def test_no_connection_keeps_the_key_and_the_code_for_the_next_try(tmp_path: Path) -> None:
    def offline(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 101] Network is unreachable")

    with pytest.raises(EnrollError) as failed:
        enroll(URL, CODE, tmp_path, transport=httpx.MockTransport(offline))
    message = str(failed.value)
    assert "no connection to the council" in message and "code was not used" in message
    assert "try again" in message
    made = HubIdentity.load(tmp_path).public_key_b64()
    council = StandIn()
    enroll(URL, CODE, tmp_path, transport=council.transport())  # back online
    assert council.sent_key() == made


def test_an_enrolled_hub_is_not_enrolled_again_without_force(tmp_path: Path) -> None:
    council = StandIn()
    enroll(URL, CODE, tmp_path, transport=council.transport())
    with pytest.raises(EnrollError, match=r"already enrolled as hub-000000000001.*--force"):
        enroll(URL, CODE, tmp_path, hub_id="hub-000000000001", transport=council.transport())
    assert len(council.requests) == 1  # refused before asking the council


def test_force_keeps_the_old_key_until_the_council_accepts_the_new_one(tmp_path: Path) -> None:
    council = StandIn()
    enroll(URL, CODE, tmp_path, transport=council.transport())
    old = HubIdentity.load(tmp_path).public_key_b64()
    council.answer = refuse(403, "enrollment code already used")
    with pytest.raises(EnrollError):
        enroll(
            URL,
            CODE,
            tmp_path,
            hub_id="hub-000000000001",
            force=True,
            transport=council.transport(),
        )
    assert HubIdentity.load(tmp_path).public_key_b64() == old  # still the working identity
    assert council.sent_key() != old
    council.answer = council.accept
    answer = enroll(
        URL, CODE, tmp_path, hub_id="hub-000000000001", force=True, transport=council.transport()
    )
    new = HubIdentity.load(tmp_path).public_key_b64()
    assert new != old and new == council.sent_key() and answer.hub_id == "hub-000000000002"
    assert stat.S_IMODE((tmp_path / KEY_FILENAME).stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [RECORD_FILENAME, KEY_FILENAME]


def test_an_answer_already_recorded_finishes_without_asking_again(tmp_path: Path) -> None:
    """The council answered but the config was never written (power cut): the same command
    again must finish, not spend a code the council now counts as used."""
    council = StandIn()
    first = enroll(URL, CODE, tmp_path, transport=council.transport())
    again = enroll(URL + "/", CODE, tmp_path, transport=council.transport())
    assert again == first and len(council.requests) == 1
    # A record for another council does not count.
    other = StandIn()
    enroll("https://other.test", CODE, tmp_path, transport=other.transport())
    assert len(other.requests) == 1


def test_a_malformed_acceptance_is_not_taken_for_an_enrollment(tmp_path: Path) -> None:
    council = StandIn()
    council.answer = lambda _r: httpx.Response(201, json={"hub": "x"})
    with pytest.raises(EnrollError, match="not an enrollment"):
        enroll(URL, CODE, tmp_path, transport=council.transport())


# -- against the real council service ------------------------------------------------------


def _post_enroll(url: str, code: str, data_dir: Path, **kw: Any) -> Any:
    return enroll(url, code, data_dir, name="Test flat", **kw)


def test_enroll_against_the_real_council(tmp_path: Path, council_db_url: str) -> None:
    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0, note="flat 3").code
        answer = _post_enroll(council.url, code, tmp_path / "a")
        hub = council.store.get_hub(answer.hub_id)
        assert hub is not None and hub.name == "Test flat"
        assert (
            base64.b64encode(hub.public_key).decode()
            == HubIdentity.load(tmp_path / "a").public_key_b64()
        )
        assert answer.config_version == hub.config_version

        # The same code again, from another hub: used.
        with pytest.raises(EnrollError, match=r"refused the enrollment code: .*used"):
            _post_enroll(council.url, code, tmp_path / "b")
        # An expired code.
        old = council.store.create_code(60.0, now=1_000_000.0).code
        with pytest.raises(EnrollError, match="expired"):
            _post_enroll(council.url, old, tmp_path / "b")
        # A code that never existed.
        with pytest.raises(EnrollError, match="unknown"):
            _post_enroll(council.url, "ZZZZ-ZZZZ-ZZZZ", tmp_path / "b")
        # The first hub again (its config lost the hub id): finished from the record.
        fresh = council.store.create_code(3600.0).code
        assert _post_enroll(council.url, fresh, tmp_path / "a") == answer
        # Without the record the council is asked: 409, and the code is not spent.
        (tmp_path / "a" / RECORD_FILENAME).unlink()
        with pytest.raises(EnrollError, match="already has this hub's key"):
            _post_enroll(council.url, fresh, tmp_path / "a")
        states = {c.id: c.state for c in council.store.list_codes()}
        assert sorted(states.values()) == ["expired", "unused", "used"]
        # Hub b's key (made by the refused attempts) enrolls with that unspent code.
        b = _post_enroll(council.url, fresh, tmp_path / "b")
        assert b.hub_id != answer.hub_id


def test_a_lost_answer_is_told_apart_from_no_connection(tmp_path: Path) -> None:
    """A read error means the council may have enrolled the hub before the answer was lost;
    the retry's "code used" then points the installer at the hub id the council holds."""
    council = StandIn()

    def answer_lost(request: httpx.Request) -> httpx.Response:
        council.handle(request)  # enrolled by the council...
        raise httpx.ReadError("connection reset by peer")  # ...but the answer never arrives

    with pytest.raises(EnrollError, match="while waiting for its answer") as lost:
        enroll(URL, CODE, tmp_path, transport=httpx.MockTransport(answer_lost))
    assert "code was not used" not in str(lost.value)
    council.answer = refuse(403, "enrollment code already used")
    with pytest.raises(EnrollError, match=r"already used.*cut off.*hearth council code list"):
        enroll(URL, CODE, tmp_path, transport=council.transport())


def _answer_lost_after_commit() -> httpx.MockTransport:
    """Sends the request to the real council, which commits, then loses its answer."""
    real = httpx.Client()

    def handler(request: httpx.Request) -> httpx.Response:
        sent = real.post(
            str(request.url), content=request.content, headers={"content-type": "application/json"}
        )
        assert sent.status_code == 201, sent.text
        raise httpx.ReadError("connection reset by peer")

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("force_again", [True, False])
def test_force_with_a_lost_answer_keeps_the_new_key_and_the_retry_completes(
    tmp_path: Path, council_db_url: str, force_again: bool
) -> None:
    with running_council(council_db_url) as council:
        first = enroll(council.url, council.store.create_code(3600.0).code, tmp_path)
        old_key = HubIdentity.load(tmp_path).public_key_b64()
        code = council.store.create_code(3600.0).code
        with pytest.raises(EnrollError, match="run the same hearth enroll again"):
            enroll(
                council.url,
                code,
                tmp_path,
                hub_id=first.hub_id,
                force=True,
                transport=_answer_lost_after_commit(),
            )
        assert HubIdentity.load(tmp_path).public_key_b64() == old_key  # still working
        again = enroll(council.url, code, tmp_path, hub_id=first.hub_id, force=force_again)
        assert again.hub_id != first.hub_id
        hub = council.store.get_hub(again.hub_id)
        assert hub is not None
        new_key = HubIdentity.load(tmp_path).public_key_b64()
        assert base64.b64encode(hub.public_key).decode() == new_key != old_key
        assert [c.hub_id for c in council.store.list_codes()] == [first.hub_id, again.hub_id]
        # The config write then failed: the rerun (config still says the old id) finishes
        # from enrollment.json, with or without --force, and asks the council nothing.
        for force in (True, False):
            redo = enroll(council.url, "ZZZZ-ZZZZ-ZZZZ", tmp_path, hub_id=first.hub_id, force=force)
            assert redo == again


def test_a_lost_answer_then_the_same_command_completes(tmp_path: Path, council_db_url: str) -> None:
    with running_council(council_db_url) as council:
        code = council.store.create_code(3600.0).code
        with pytest.raises(EnrollError, match="while waiting for its answer"):
            enroll(council.url, code, tmp_path, transport=_answer_lost_after_commit())
        answer = enroll(council.url, code, tmp_path)
        hub = council.store.get_hub(answer.hub_id)
        assert hub is not None
        assert (
            base64.b64encode(hub.public_key).decode() == HubIdentity.load(tmp_path).public_key_b64()
        )

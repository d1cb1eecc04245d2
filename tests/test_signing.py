"""Signed requests: what verifies, and the exact reason each alteration is refused."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.identity import HubIdentity
from sync.signing import (
    HEADER_CONTENT_SHA256,
    HEADER_HUB,
    HEADER_SIGNATURE,
    HEADER_TARGET,
    HEADER_TIMESTAMP,
    Reason,
    SignatureError,
    canonical_string,
    hub_id_from_headers,
    sign_request,
    verify_request,
)

NOW = 1_750_000_000
HUB = "hub-7f3a"
PATH = "/v1/hubs/hub-7f3a/batches?compress=zstd"
BODY = b"\x28\xb5\x2f\xfd compressed batch bytes"
ALL_HEADERS = [HEADER_HUB, HEADER_TIMESTAMP, HEADER_CONTENT_SHA256, HEADER_TARGET, HEADER_SIGNATURE]


class _FixedKey:
    """A Signer with a known key, for vectors another implementation can check against."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[HubIdentity, HubIdentity]:
    base = tmp_path_factory.mktemp("keys")
    return HubIdentity.generate(base / "a"), HubIdentity.generate(base / "b")


@pytest.fixture(scope="module")
def hub_a(keys: tuple[HubIdentity, HubIdentity]) -> HubIdentity:
    return keys[0]


@pytest.fixture(scope="module")
def hub_b(keys: tuple[HubIdentity, HubIdentity]) -> HubIdentity:
    return keys[1]


def _refused(
    key: str,
    headers: Mapping[str, Any],
    method: Any = "POST",
    path: Any = PATH,
    body: Any = BODY,
    now: Any = NOW,
    **kwargs: Any,
) -> Reason:
    with pytest.raises(SignatureError) as excinfo:
        verify_request(key, headers, method, path, body, now, **kwargs)
    return excinfo.value.reason


def test_round_trip(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    verify_request(hub_a.public_key_b64(), headers, "POST", PATH, BODY, NOW)
    assert hub_id_from_headers(headers) == HUB
    assert headers[HEADER_TIMESTAMP] == str(NOW)
    assert headers[HEADER_CONTENT_SHA256] == hashlib.sha256(BODY).hexdigest()
    assert len(base64.b64decode(headers[HEADER_SIGNATURE], validate=True)) == 64


def test_round_trip_get_with_empty_body(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "get", "/v1/hubs/hub-7f3a/config", b"", NOW)
    verify_request(hub_a.public_key_b64(), headers, "GET", "/v1/hubs/hub-7f3a/config", b"", NOW)


def test_known_answer_vector() -> None:
    """Pins the wire format: changing the canonical string breaks this on purpose."""
    signer = _FixedKey(bytes(range(32)))
    message = canonical_string(HUB, "post", PATH, NOW, hashlib.sha256(BODY).hexdigest())
    assert message == (
        b"hearth-request-v1\nhub-7f3a\nPOST\n/v1/hubs/hub-7f3a/batches?compress=zstd\n"
        b"1750000000\n" + hashlib.sha256(BODY).hexdigest().encode()
    )
    headers = sign_request(signer, HUB, "POST", PATH, BODY, NOW)
    assert headers[HEADER_TARGET] == f"POST {PATH}"
    assert headers[HEADER_SIGNATURE] == base64.b64encode(signer.sign(message)).decode()
    public = base64.b64encode(
        Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key().public_bytes_raw()
    ).decode()
    verify_request(public, headers, "POST", PATH, BODY, NOW)


@pytest.mark.parametrize("missing", ALL_HEADERS)
def test_each_missing_header_is_named(hub_a: HubIdentity, missing: str) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    del headers[missing]
    with pytest.raises(SignatureError) as excinfo:
        verify_request(hub_a.public_key_b64(), headers, "POST", PATH, BODY, NOW)
    assert excinfo.value.reason is Reason.MISSING_HEADER
    assert missing in str(excinfo.value)


def test_no_headers_at_all(hub_a: HubIdentity) -> None:
    assert _refused(hub_a.public_key_b64(), {}) is Reason.MISSING_HEADER
    with pytest.raises(SignatureError):
        hub_id_from_headers({})


@pytest.mark.parametrize(
    "bad",
    ["", "!!!!", "not base64 at all", "QUJD", "QUJD" * 30, "é" * 88, base64.b64encode(b"x" * 63)],
)
def test_bad_base64_signature(hub_a: HubIdentity, bad: str | bytes) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers[HEADER_SIGNATURE] = bad.decode() if isinstance(bad, bytes) else bad
    assert _refused(hub_a.public_key_b64(), headers) is Reason.BAD_BASE64


def test_signature_from_another_hubs_key(hub_a: HubIdentity, hub_b: HubIdentity) -> None:
    """Hub B signs a request claiming to be hub A; the council checks it with A's key."""
    headers = sign_request(hub_b, HUB, "POST", PATH, BODY, NOW)
    assert _refused(hub_a.public_key_b64(), headers) is Reason.FORGED


def test_random_signature_is_forged(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers[HEADER_SIGNATURE] = base64.b64encode(bytes(64)).decode()
    assert _refused(hub_a.public_key_b64(), headers) is Reason.FORGED


def test_one_flipped_signature_bit_is_forged(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    raw = bytearray(base64.b64decode(headers[HEADER_SIGNATURE]))
    raw[10] ^= 0x01
    headers[HEADER_SIGNATURE] = base64.b64encode(bytes(raw)).decode()
    assert _refused(hub_a.public_key_b64(), headers) is Reason.FORGED


def test_body_tampered(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    assert _refused(hub_a.public_key_b64(), headers, body=BODY + b"x") is Reason.BODY_TAMPERED
    assert _refused(hub_a.public_key_b64(), headers, body=b"") is Reason.BODY_TAMPERED


def test_body_tampered_with_a_matching_digest_header_is_still_refused(hub_a: HubIdentity) -> None:
    """The digest header is a diagnostic, not trusted: recomputing it does not help."""
    other = b"a different batch"
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers[HEADER_CONTENT_SHA256] = hashlib.sha256(other).hexdigest()
    assert _refused(hub_a.public_key_b64(), headers, body=other) is Reason.FORGED


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/hubs/hub-other/batches?compress=zstd"),
        ("POST", "/v1/hubs/hub-7f3a/batches"),
        ("POST", "/v1/hubs/hub-7f3a/batches?compress=zstd&x=1"),
        ("PUT", PATH),
        ("GET", PATH),
    ],
)
def test_path_or_method_changed(hub_a: HubIdentity, method: str, path: str) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    assert _refused(hub_a.public_key_b64(), headers, method, path) is Reason.TARGET_CHANGED
    # Rewriting the target header to match does not help either.
    headers[HEADER_TARGET] = f"{method} {path}"
    assert _refused(hub_a.public_key_b64(), headers, method, path) is Reason.FORGED


def test_replay_of_a_captured_request(hub_a: HubIdentity) -> None:
    """Verbatim inside the window it verifies (the upload is idempotent on sequence numbers);
    later, or with anything changed, it is refused."""
    captured = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    key = hub_a.public_key_b64()
    verify_request(key, dict(captured), "POST", PATH, BODY, NOW + 60)
    assert _refused(key, dict(captured), now=NOW + 3600) is Reason.TIMESTAMP
    assert _refused(key, dict(captured), body=b"new events") is Reason.BODY_TAMPERED
    assert _refused(key, dict(captured), path="/v1/hubs/hub-7f3a/config") is Reason.TARGET_CHANGED
    # Refreshing only the timestamp to get back into the window breaks the signature.
    fresh = dict(captured, **{HEADER_TIMESTAMP: str(NOW + 3600)})
    assert _refused(key, fresh, now=NOW + 3600) is Reason.FORGED


def test_hub_id_is_signed(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers[HEADER_HUB] = "hub-other"
    assert _refused(hub_a.public_key_b64(), headers) is Reason.FORGED


@pytest.mark.parametrize("offset", [-300, -299, -1, 0, 1, 299, 300, 300.0, -300.0])
def test_timestamp_inside_the_window_edges_included(hub_a: HubIdentity, offset: float) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    verify_request(hub_a.public_key_b64(), headers, "POST", PATH, BODY, NOW + offset)


@pytest.mark.parametrize("offset", [-301, 301, 300.001, -300.5, 86_400, -NOW])
def test_timestamp_outside_the_window(hub_a: HubIdentity, offset: float) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    assert _refused(hub_a.public_key_b64(), headers, now=NOW + offset) is Reason.TIMESTAMP


def test_hub_clock_in_1970_after_boot(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, 42.0)
    with pytest.raises(SignatureError, match="clock") as excinfo:
        verify_request(hub_a.public_key_b64(), headers, "POST", PATH, BODY, NOW)
    assert excinfo.value.reason is Reason.TIMESTAMP


def test_fractional_signing_time_is_floored(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW + 0.999)
    assert headers[HEADER_TIMESTAMP] == str(NOW)


def test_custom_window(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    key = hub_a.public_key_b64()
    verify_request(key, headers, "POST", PATH, BODY, NOW + 30, max_skew_s=30)
    assert _refused(key, headers, now=NOW + 31, max_skew_s=30) is Reason.TIMESTAMP


@pytest.mark.parametrize(
    "bad", ["", "12a", " 1750000000", "1750000000 ", "-5", "1e9", "١٧٥٠", "+1"]
)
def test_malformed_timestamp(hub_a: HubIdentity, bad: str) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers[HEADER_TIMESTAMP] = bad
    assert _refused(hub_a.public_key_b64(), headers) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize("fold", [str.lower, str.upper, str.swapcase])
def test_header_names_are_case_insensitive(hub_a: HubIdentity, fold: Any) -> None:
    headers = {fold(k): v for k, v in sign_request(hub_a, HUB, "POST", PATH, BODY, NOW).items()}
    verify_request(hub_a.public_key_b64(), headers, "POST", PATH, BODY, NOW)
    assert hub_id_from_headers(headers) == HUB


def test_a_header_given_twice_with_different_values_is_refused(hub_a: HubIdentity) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    same = dict(headers, **{HEADER_HUB.lower(): HUB})
    verify_request(hub_a.public_key_b64(), same, "POST", PATH, BODY, NOW)
    clash = dict(headers, **{HEADER_HUB.lower(): "hub-other"})
    assert _refused(hub_a.public_key_b64(), clash) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize("bad_key", ["", "%%%", base64.b64encode(b"k" * 31).decode(), "é"])
def test_bad_enrolled_public_key(hub_a: HubIdentity, bad_key: str) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    assert _refused(bad_key, headers) is Reason.BAD_PUBLIC_KEY


@pytest.mark.parametrize(
    ("hub_id", "method", "path"),
    [
        ("hub\nPOST", "POST", PATH),
        ("", "POST", PATH),
        ("hub 1", "POST", PATH),
        (HUB, "PO ST", PATH),
        (HUB, "POST\n", PATH),
        (HUB, "POST", "v1/no-leading-slash"),
        (HUB, "POST", "/v1/with space"),
        (HUB, "POST", "/v1/x\n1750000000"),
        (HUB, "POST", "/v1/ünicode"),
    ],
)
def test_sign_refuses_fields_that_would_make_the_string_ambiguous(
    hub_a: HubIdentity, hub_id: str, method: str, path: str
) -> None:
    with pytest.raises(ValueError):
        sign_request(hub_a, hub_id, method, path, BODY, NOW)


def test_sign_refuses_a_non_finite_time(hub_a: HubIdentity) -> None:
    with pytest.raises(ValueError):
        sign_request(hub_a, HUB, "POST", PATH, BODY, float("nan"))


@pytest.mark.parametrize(
    ("headers", "method", "path", "body", "now"),
    [
        (None, "POST", PATH, BODY, NOW),
        ({HEADER_HUB: None}, "POST", PATH, BODY, NOW),
        ({b"x-hearth-hub": b"x"}, "POST", PATH, BODY, NOW),
        ("signed", "POST", PATH, BODY, NOW),
        ("VALID", None, PATH, BODY, NOW),
        ("VALID", "POST", None, BODY, NOW),
        ("VALID", "POST", PATH, "text body", NOW),
        ("VALID", "POST", PATH, BODY, float("nan")),
        ("VALID", "POST", PATH, BODY, "now"),
        ("VALID", "POST", "/v1/\nx", BODY, NOW),
    ],
)
def test_wrong_types_still_raise_only_signature_error(
    hub_a: HubIdentity, headers: Any, method: Any, path: Any, body: Any, now: Any
) -> None:
    if headers == "VALID":
        headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
        if isinstance(path, str) and path != PATH:
            headers[HEADER_TARGET] = f"POST {path}"
    _refused(hub_a.public_key_b64(), headers, method, path, body, now)


_header_text = st.text(max_size=120) | st.sampled_from(["", "=", "AAAA", "0" * 64, str(NOW)])


@settings(max_examples=300, deadline=None)
@given(
    replaced=st.dictionaries(st.sampled_from(ALL_HEADERS), _header_text, max_size=5),
    dropped=st.sets(st.sampled_from(ALL_HEADERS), max_size=2),
    method=st.sampled_from(["POST", "GET", "post"]) | st.text(max_size=8),
    path=st.sampled_from([PATH, "/"]) | st.text(max_size=40),
    body=st.sampled_from([BODY, b""]) | st.binary(max_size=64),
    now=st.sampled_from([NOW, NOW + 300]) | st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_alteration_raises_only_signature_error(
    hub_a: HubIdentity,
    replaced: dict[str, str],
    dropped: set[str],
    method: str,
    path: str,
    body: bytes,
    now: float,
) -> None:
    headers = sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
    headers.update(replaced)
    for name in dropped:
        headers.pop(name, None)
    unchanged = (
        headers == sign_request(hub_a, HUB, "POST", PATH, BODY, NOW)
        and method.isascii()
        and method.upper() == "POST"
        and path == PATH
        and body == BODY
        and NOW - 300 <= now <= NOW + 300
    )
    try:
        verify_request(hub_a.public_key_b64(), headers, method, path, body, now)
    except SignatureError:
        assert not unchanged
    else:
        assert unchanged

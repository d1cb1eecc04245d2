"""Request signatures: how the council knows a request comes from an enrolled hub, unaltered.

Both ends use this module; it imports no hardware library and nothing from the hub but a
protocol for "something that signs".

Headers the hub sends (names are case-insensitive, as in HTTP):

    X-Hearth-Hub             the hub id the council gave at enrollment
    X-Hearth-Timestamp       Unix seconds, ASCII digits only
    X-Hearth-Content-SHA256  lowercase hex SHA-256 of the body exactly as sent (compressed)
    X-Hearth-Target          "METHOD /path?query" as signed
    X-Hearth-Signature       standard base64 of the 64-byte Ed25519 signature

The signature is over this canonical string (UTF-8, fields joined by "\\n", no trailing
newline); each field is checked to contain no newline or control character, so the string
parses one way only:

    hearth-request-v1
    <hub id>
    <METHOD, upper case>
    <path with query, exactly as on the wire: percent-encoded, not decoded>
    <timestamp>
    <hex SHA-256 of the body>

The version tag makes a future format (v2) unable to collide with this one. The council
rebuilds the string from the request it actually received (method, raw path and query, body),
never from the headers, so the digest and target headers add no trust: they only let the
council say *what* changed (a proxy that rewrote the path or re-encoded the body) instead of
a bare "bad signature". On an ASGI server the path to pass is `scope["raw_path"]`, plus
`?` and `scope["query_string"]` when that is not empty.

Replay: a captured request can be replayed unchanged only within the skew window, and an
upload is idempotent on (hub id, sequence), so a replay stores nothing new. Changing anything
in it (body, path, method, hub id, timestamp) breaks the signature.

Clock skew after boot: a Pi has no battery-backed clock. Until NTP answers, its clock is
wherever fake-hwclock left it (hours or days behind) or 1970, and requests are refused with
`SignatureError(reason="timestamp")`. The hub loses nothing by that (events stay in its
outbox until acknowledged), but it cannot upload until NTP syncs. The intended remedy, not
built here: the council puts its own time in every answer, refusals included (an
`X-Hearth-Time` header, or the standard `Date`); the hub, which authenticated the council by
TLS, keeps offset = council time - local time and passes `now = local time + offset` to
`sign_request`. That offset only moves the signing timestamp, never event timestamps (those
carry their own clock state). `max_skew_s` (300 s by default) is thus the tolerance for an
NTP-synced hub, or a corrected one, plus request latency; it is symmetric, so a hub clock
that runs ahead is refused the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "HEADER_CONTENT_SHA256",
    "HEADER_HUB",
    "HEADER_SIGNATURE",
    "HEADER_TARGET",
    "HEADER_TIMESTAMP",
    "SIGNATURE_VERSION",
    "Reason",
    "SignatureError",
    "Signer",
    "canonical_string",
    "hub_id_from_headers",
    "sign_request",
    "verify_request",
]

SIGNATURE_VERSION = "hearth-request-v1"
HEADER_HUB = "X-Hearth-Hub"
HEADER_TIMESTAMP = "X-Hearth-Timestamp"
HEADER_CONTENT_SHA256 = "X-Hearth-Content-SHA256"
HEADER_TARGET = "X-Hearth-Target"
HEADER_SIGNATURE = "X-Hearth-Signature"
_REQUIRED = (HEADER_HUB, HEADER_TIMESTAMP, HEADER_CONTENT_SHA256, HEADER_TARGET, HEADER_SIGNATURE)

DEFAULT_MAX_SKEW_S = 300.0
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_METHOD_RE = re.compile(r"[A-Z]{1,16}")
_HEX_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Visible ASCII only: no space, newline or control character can make the string ambiguous.
_FIELD_RE = re.compile(r"[\x21-\x7e]{1,8192}")
_SIGNATURE_LEN = 64
_PUBLIC_KEY_LEN = 32


class Signer(Protocol):
    """What `sign_request` needs from the hub's identity (hub.identity.HubIdentity)."""

    def sign(self, message: bytes) -> bytes: ...


class Reason(StrEnum):
    """Why a request was refused; safe to log and to return to the hub."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    BAD_BASE64 = "bad_base64"
    BAD_PUBLIC_KEY = "bad_public_key"
    TIMESTAMP = "timestamp"
    TARGET_CHANGED = "target_changed"
    BODY_TAMPERED = "body_tampered"
    FORGED = "forged"


class SignatureError(Exception):
    """A request failed verification; `reason` says which check refused it."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical_string(
    hub_id: str, method: str, path: str, timestamp: int, body_sha256_hex: str
) -> bytes:
    """The exact bytes that are signed (see the module docstring). Raises ValueError on a
    field that could make the string ambiguous."""
    if not _FIELD_RE.fullmatch(hub_id):
        raise ValueError("hub id must be 1-8192 visible ASCII characters")
    if not method.isascii():  # "poſt".upper() == "POST": fold only ASCII
        raise ValueError(f"not an HTTP method: {method!r}")
    method = method.upper()
    if not _METHOD_RE.fullmatch(method):
        raise ValueError(f"not an HTTP method: {method!r}")
    if not path.startswith("/") or not _FIELD_RE.fullmatch(path):
        raise ValueError("path must start with '/' and be visible ASCII (percent-encoded)")
    if timestamp < 0 or not _TIMESTAMP_RE.fullmatch(str(timestamp)):
        raise ValueError(f"timestamp out of range: {timestamp}")
    if not _HEX_SHA256_RE.fullmatch(body_sha256_hex):
        raise ValueError("body digest must be 64 lowercase hex digits")
    return "\n".join(
        (SIGNATURE_VERSION, hub_id, method, path, str(timestamp), body_sha256_hex)
    ).encode("ascii")


def sign_request(
    identity: Signer, hub_id: str, method: str, path: str, body: bytes, now: float
) -> dict[str, str]:
    """Headers that authenticate this request as coming from `hub_id`.

    `path` includes the query string exactly as it will go on the wire; `body` is the bytes
    as sent (after compression); `now` is Unix seconds (the hub's best estimate: see the
    module docstring on clock skew). Raises ValueError on inputs that cannot be signed.
    """
    if not math.isfinite(now):
        raise ValueError("now must be a finite number of seconds")
    timestamp = math.floor(now)
    digest = hashlib.sha256(body).hexdigest()
    message = canonical_string(hub_id, method, path, timestamp, digest)
    signature = identity.sign(message)
    return {
        HEADER_HUB: hub_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_CONTENT_SHA256: digest,
        HEADER_TARGET: f"{method.upper()} {path}",
        HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii"),
    }


def hub_id_from_headers(headers: Mapping[str, str]) -> str:
    """The claimed hub id, so the council can look up the key to verify with. Unverified
    until `verify_request` succeeds with that hub's key."""
    hub_id = _lowered(headers).get(HEADER_HUB.lower())
    if hub_id is None:
        raise SignatureError(Reason.MISSING_HEADER, f"no {HEADER_HUB} header")
    if not _FIELD_RE.fullmatch(hub_id):
        raise SignatureError(Reason.MALFORMED_HEADER, f"{HEADER_HUB} is not a valid hub id")
    return hub_id


def verify_request(
    public_key_b64: str,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float,
    *,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> None:
    """Check that this request was signed by the holder of `public_key_b64`, unaltered, and
    recently (|now - timestamp| <= max_skew_s, edges included).

    `method`, `path` (raw, with query) and `body` are what the council actually received.
    Raises SignatureError, and only SignatureError, naming the first check that failed.
    The cheap checks run first so a flood of junk costs no signature verification.
    """
    lowered = _lowered(headers)
    for name in _REQUIRED:
        if name.lower() not in lowered:
            raise SignatureError(Reason.MISSING_HEADER, f"no {name} header")
    hub_id = lowered[HEADER_HUB.lower()]
    if not _FIELD_RE.fullmatch(hub_id):
        raise SignatureError(Reason.MALFORMED_HEADER, f"{HEADER_HUB} is not a valid hub id")

    raw_timestamp = lowered[HEADER_TIMESTAMP.lower()]
    if not _TIMESTAMP_RE.fullmatch(raw_timestamp):
        raise SignatureError(
            Reason.MALFORMED_HEADER, f"{HEADER_TIMESTAMP} must be Unix seconds in ASCII digits"
        )
    timestamp = int(raw_timestamp)
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise SignatureError(Reason.TIMESTAMP, "the verifier's clock reading is not a number")
    skew = now - timestamp
    if abs(skew) > max_skew_s:
        raise SignatureError(
            Reason.TIMESTAMP,
            f"timestamp {timestamp} is {skew:+.0f} s from the council's clock; "
            f"the window is ±{max_skew_s:g} s (is the hub's clock set?)",
        )

    raw_signature = lowered[HEADER_SIGNATURE.lower()]
    try:
        signature = base64.b64decode(raw_signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(Reason.BAD_BASE64, f"{HEADER_SIGNATURE} is not base64") from None
    if len(signature) != _SIGNATURE_LEN:
        raise SignatureError(
            Reason.BAD_BASE64,
            f"{HEADER_SIGNATURE} decodes to {len(signature)} bytes, not {_SIGNATURE_LEN}",
        )

    if not isinstance(method, str) or not isinstance(path, str):
        raise SignatureError(Reason.TARGET_CHANGED, "method and path must be text")
    target = f"{method.upper()} {path}"
    if lowered[HEADER_TARGET.lower()] != target:
        raise SignatureError(
            Reason.TARGET_CHANGED,
            "the request's method or path is not the one the hub signed "
            "(a proxy rewriting paths, or a replay to another endpoint)",
        )

    if not isinstance(body, bytes | bytearray | memoryview):
        raise SignatureError(Reason.BODY_TAMPERED, "body must be bytes")
    digest = hashlib.sha256(body).hexdigest()
    if lowered[HEADER_CONTENT_SHA256.lower()] != digest:
        raise SignatureError(
            Reason.BODY_TAMPERED, "the body is not the one the hub signed (altered in transit?)"
        )

    public_key = _public_key(public_key_b64)
    try:
        # Built from what arrived, not from the diagnostic headers.
        message = canonical_string(hub_id, method, path, timestamp, digest)
    except ValueError as exc:
        raise SignatureError(Reason.MALFORMED_HEADER, str(exc)) from None
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise SignatureError(
            Reason.FORGED,
            "the signature does not match this hub's key (another key, or forged)",
        ) from None


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names folded to lower case. Two spellings of one header with different values
    are refused rather than resolved, so what we verify is what any later reader sees."""
    out: dict[str, str] = {}
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        raise SignatureError(Reason.MALFORMED_HEADER, "headers are not a mapping") from None
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise SignatureError(Reason.MALFORMED_HEADER, "header names and values must be text")
        key = name.lower()
        if key in out and out[key] != value:
            raise SignatureError(Reason.MALFORMED_HEADER, f"header {name} given twice")
        out[key] = value
    return out


def _public_key(public_key_b64: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise SignatureError(
            Reason.BAD_PUBLIC_KEY, "the enrolled public key is not base64"
        ) from None
    if len(raw) != _PUBLIC_KEY_LEN:
        raise SignatureError(Reason.BAD_PUBLIC_KEY, "the enrolled public key is not 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SignatureError(Reason.BAD_PUBLIC_KEY, "the enrolled public key is invalid") from None

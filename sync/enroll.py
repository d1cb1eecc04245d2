"""Enrollment on the hub: make the key pair, register its public half with a one-time code.

The private key is written once, mode 0600, by hub.identity, and never leaves this module in
any form but signatures: the request carries the public key only, and nothing here logs key
material. The steps are ordered so that no failure leaves the installer stuck:

- A key without a hub id is reused: an earlier attempt may have failed before the council
  answered, and the code is still unused.
- The council's answer is written to `enrollment.json` beside the key before the caller
  writes the config. If writing the config then fails (disk full, power cut), the next
  `hearth enroll` finishes from that record without asking the council again, which would
  refuse the code as used.
- `force` (a new identity for a hub that already has one) makes the new key aside and puts it
  in place only once the council has accepted it: a refused code leaves the old identity
  working.
- A staged key is deleted only after a definite refusal (403, 409, 422). After anything else
  (above all an answer lost after the council committed) it is kept, and the next run, with
  or without --force, sends it again: the council answers 201 again for the same code and
  the same key while the code is unexpired, so the retry completes instead of failing
  "used" with the enrolled key thrown away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from hub.fsutil import atomic_write_text, fsync_directory
from hub.identity import KEY_FILENAME, HubIdentity, KeyFileError
from sync.client import response_detail, tls_context, untrusted_certificate
from sync.health import software_version
from sync.protocol import ENROLL_PATH, EnrollRequest, EnrollResponse

if TYPE_CHECKING:
    from hub.config import HubConfig

log = logging.getLogger(__name__)

RECORD_FILENAME = "enrollment.json"
_PENDING_DIR = "enroll-pending"


class EnrollError(Exception):
    """Enrollment did not happen; the message tells the installer what to do next. `status`
    is the council's refusal, None when no answer arrived."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def definite(self) -> bool:
        """The council refused this key or code for good: a staged key is of no more use."""
        return self.status in (403, 409, 422)


def _read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((data_dir / RECORD_FILENAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _finished_earlier(
    data_dir: Path, identity: HubIdentity, council_url: str
) -> EnrollResponse | None:
    """The council's earlier answer for this very key and council, if one was recorded."""
    record = _read_record(data_dir)
    if record is None:
        return None
    if record.get("public_key") != identity.public_key_b64():
        return None
    if str(record.get("council_url", "")).rstrip("/") != council_url.rstrip("/"):
        return None
    try:
        return EnrollResponse.model_validate(record.get("response"))
    except ValidationError:
        return None


def _write_record(
    data_dir: Path, identity: HubIdentity, council_url: str, answer: EnrollResponse
) -> None:
    record = {
        "council_url": council_url,
        "public_key": identity.public_key_b64(),
        "response": answer.model_dump(mode="json"),
    }
    atomic_write_text(data_dir / RECORD_FILENAME, json.dumps(record, indent=2) + "\n")


def _no_connection(council_url: str, exc: httpx.RequestError) -> str:
    cert = untrusted_certificate(exc)
    if cert is not None:
        return (
            f"the council at {council_url} presented a certificate this hub does not trust"
            f" ({cert.verify_message}); if the council uses its own CA, give its CA"
            " certificate with --ca-bundle. The code was not used."
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"no connection to the council at {council_url} ({type(exc).__name__}: {exc});"
            " the code was not used and stays valid until the expiry given with it: try"
            " again when the hub is online"
        )
    # The request may have reached the council, and the answer been lost on the way back.
    return (
        f"no connection to the council at {council_url} ({type(exc).__name__}: {exc}) while"
        " waiting for its answer; run the same hearth enroll again before the code expires:"
        " it sends the same key with the same code, and the council answers again if it had"
        " enrolled the hub"
    )


_ASK_FOR_ID = (
    "the council's admin sees this hub's id beside the code (hearth council code list);"
    " put it in the config as [hub] id."
)


def _refusal(status: int, detail: str, council_url: str) -> str:
    if status == 403:
        return (
            f"the council refused the enrollment code: {detail}. Ask the council's admin for"
            " a new code (hearth council code create) and run hearth enroll again."
        )
    if status == 409:
        return (
            f"the council already has this hub's key enrolled ({detail}), with another code."
            " If that enrollment was this hub's, run hearth enroll again with that code while"
            " it is unexpired (the council answers it again), or ask the council's admin for"
            " the hub id (hearth council code list) and put it in the config as [hub] id; to"
            " enroll it as a new hub, run hearth enroll again with --force (a new key)."
        )
    if status == 422:
        return f"the council could not accept the request: {detail}"
    if status == 404:
        return (
            f"{council_url} has no enrollment endpoint ({detail}): is this the council's address?"
        )
    return f"the council at {council_url} answered {status}: {detail}"


def enroll(
    council_url: str,
    code: str,
    data_dir: Path,
    *,
    name: str | None = None,
    ca_bundle: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    hub_id: str | None = None,
    force: bool = False,
    timeout_s: float = 30.0,
) -> EnrollResponse:
    """Enroll this hub with the council; returns the council's answer (hub id, config).

    `hub_id` is the id the hub's config already has, if any: with a key too, the hub is
    enrolled and this refuses unless `force`. Raises EnrollError with the installer's next
    step; KeyFileError if the key on disk is unusable (its message says how to fix it).
    """
    data_dir = Path(data_dir)
    council_url = council_url.rstrip("/")
    key_path = data_dir / KEY_FILENAME
    pending = data_dir / _PENDING_DIR
    has_key = os.path.lexists(key_path)
    has_pending = os.path.lexists(pending / KEY_FILENAME)
    if has_key:
        # Finished earlier (the config write failed or lost the id, also after --force):
        # the record for the key in place says so, without asking the council again.
        earlier = _recorded_for_key_in_place(data_dir, council_url)
        if earlier is not None and earlier.hub_id != hub_id:
            log.info("the council already enrolled this key as %s; finishing", earlier.hub_id)
            return earlier
    if has_key and hub_id and not force and not has_pending:
        raise EnrollError(
            f"this hub is already enrolled as {hub_id} (key {key_path}). To enroll it again"
            " as a new hub, use --force: it gets a new key and a new hub id."
        )
    if has_pending:
        # An earlier attempt staged this key and got no definite answer: the council may
        # have enrolled it. Sending it again completes that enrollment (same code) rather
        # than spending a new key on a code the council now counts as used.
        identity = HubIdentity.load(pending)
        log.info("reusing the key staged by an earlier attempt (%s)", identity.fingerprint())
    elif has_key and force:
        identity = HubIdentity.generate(pending)
    elif has_key:
        identity = HubIdentity.load(data_dir)
        log.info("reusing the hub key made by an earlier attempt (%s)", identity.fingerprint())
    else:
        identity = HubIdentity.generate(data_dir)
    staged = identity.path.parent == pending
    try:
        answer = _post(council_url, code, identity, name, ca_bundle, transport, timeout_s)
    except EnrollError as exc:
        if staged and exc.definite:
            shutil.rmtree(pending, ignore_errors=True)
        if not staged and has_key and exc.status == 403 and "used" in str(exc):
            # This key (the one in place) was made by an attempt that may have been cut off
            # after the council had enrolled it with an earlier code: say how to find out.
            raise EnrollError(
                f"{exc} If an earlier attempt with another code was cut off, {_ASK_FOR_ID}",
                exc.status,
            ) from None
        raise
    if staged:
        _replace_key(identity.path, key_path)
        identity = HubIdentity.load(data_dir)
    _write_record(data_dir, identity, council_url, answer)
    log.info("enrolled as %s (key %s)", answer.hub_id, identity.fingerprint())
    return answer


def _recorded_for_key_in_place(data_dir: Path, council_url: str) -> EnrollResponse | None:
    try:
        identity = HubIdentity.load(data_dir)
    except KeyFileError:
        return None  # an unusable key: --force replaces it, and nothing was recorded for it
    return _finished_earlier(data_dir, identity, council_url)


def _post(
    council_url: str,
    code: str,
    identity: HubIdentity,
    name: str | None,
    ca_bundle: Path | None,
    transport: httpx.BaseTransport | None,
    timeout_s: float,
) -> EnrollResponse:
    try:
        request = EnrollRequest(
            code=code.strip(),
            public_key=identity.public_key_b64(),
            name=name,
            software_version=software_version(),
        )
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise EnrollError(f"cannot send this enrollment: {problems}") from None
    try:
        verify = tls_context(ca_bundle)
    except ValueError as exc:
        raise EnrollError(str(exc)) from None
    with httpx.Client(
        verify=verify, timeout=timeout_s, transport=transport, follow_redirects=False
    ) as http:
        try:
            response = http.post(
                council_url + ENROLL_PATH, json=request.model_dump(mode="json", exclude_none=True)
            )
        except httpx.RequestError as exc:
            raise EnrollError(_no_connection(council_url, exc)) from None
    status = response.status_code
    if status != 201:
        raise EnrollError(_refusal(status, response_detail(response), council_url), status)
    try:
        return EnrollResponse.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise EnrollError(
            f"the council at {council_url} accepted the code but its answer is not an"
            f" enrollment ({exc}); ask its admin to check the service version"
        ) from None


def _replace_key(staged: Path, target: Path) -> None:
    """Put a staged key in place of the old one (rename: atomic; the old key is gone only
    once the new one is there), then make it durable."""
    os.replace(staged, target)
    fsync_directory(target.parent)
    with contextlib.suppress(OSError):
        staged.parent.rmdir()


__all__ = ["RECORD_FILENAME", "EnrollError", "KeyFileError", "enroll"]


def enrolled_config(
    config: HubConfig, answer: EnrollResponse, council_url: str, ca_bundle: Path | None
) -> tuple[HubConfig, list[str]]:
    """`config` with the hub id, council address and the council's managed sections.

    If the council's sections are refused by the hub's rules, the hub is still enrolled
    (id and address are written) and keeps its own sections; the problems are returned so
    the installer sees them, and a later config fetch can try again.
    """
    from hub.config import ConfigError, with_council_config

    base = config.model_copy(
        update={
            "hub": config.hub.model_copy(update={"id": answer.hub_id}),
            "council": config.council.model_copy(
                update={"url": council_url, "ca_bundle": ca_bundle}
            ),
        }
    )
    try:
        return with_council_config(
            base, answer.config, answer.config_version, "the council's config"
        ), []
    except ConfigError as exc:
        return base, [str(exc)]

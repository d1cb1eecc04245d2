"""What the council store refuses, as exception types the service maps to HTTP answers."""

from __future__ import annotations

from typing import Literal

RefusalReason = Literal["unknown", "used", "expired", "revoked"]


class StoreError(Exception):
    """Input the store refuses as a whole (unknown hub, malformed record or health report);
    nothing was written."""


class NotFound(StoreError):
    """The hub, code or token named does not exist."""


class Conflict(StoreError):
    """The request contradicts the stored state (e.g. revoking a code that was already used)."""


class EnrollmentRefused(StoreError):
    """An enrollment code that cannot be redeemed; `reason` says why, `detail` for people."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RefusalReason = reason
        self.detail = detail


class KeyAlreadyEnrolled(StoreError):
    """The public key belongs to an enrolled hub already (one key, one hub)."""

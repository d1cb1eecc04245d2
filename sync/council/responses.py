"""The error answers each endpoint can give, declared for the OpenAPI schema.

Declaring 422 explicitly also replaces FastAPI's default validation-error schema (a list of
dicts) with the contract's `{"detail": "..."}`, which is what the service really sends.
"""

from __future__ import annotations

from typing import Any

from sync.protocol import ErrorBody

_WHY = {
    401: "No valid credentials (token or hub signature); the detail says which check failed",
    403: "Authenticated but not allowed (role too low, refused code, another hub's data)",
    404: "No such object",
    409: "Conflicts with the current state",
    413: "The body is larger than the endpoint accepts",
    415: "Wrong Content-Type or a Content-Encoding",
    422: "The request is malformed; the detail says where",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: 422 always (any parameter or body can be malformed)."""
    wanted = sorted({*codes, 422})
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in wanted}

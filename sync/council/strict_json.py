"""JSON request bodies the database can store: no NUL character, no lone surrogate.

Both are valid JSON ("\\u0000", "\\ud800") and pass pydantic's `str`, but PostgreSQL refuses
NUL in text and JSONB, and a lone surrogate cannot be encoded as UTF-8 at all (not by the
driver, not by the JSON response). Caught here, at parse time, they are the client's 422
instead of a 500 deep in the store, for every JSON endpoint at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def unstorable_text(value: Any) -> str | None:
    """Why `value` (parsed JSON) cannot be stored, or None. Iterative: depth costs no stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string holds a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate (not valid Unicode)"
    return None


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            parsed = json.loads(body)
            problem = unstorable_text(parsed)
            if problem is not None:
                # FastAPI turns a JSONDecodeError into its 422 validation error.
                raise json.JSONDecodeError(problem, body.decode("utf-8", "replace"), 0)
            self._json = parsed
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON bodies go through `unstorable_text` (FastAPI's documented way
    to customise request parsing: a Request subclass via the route class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler

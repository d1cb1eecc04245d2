"""JSON request bodies the database can store: no NUL character, no lone surrogate, no
nesting deeper than records.MAX_JSON_DEPTH.

All are valid JSON and pass pydantic's `dict[str, Any]`, but PostgreSQL refuses NUL in text
and JSONB, a lone surrogate cannot be encoded as UTF-8 at all (not by the driver, not by the
JSON response), and a very deep document is stored fine and then breaks every answer that
contains it. Caught here, at parse time, they are the client's 422 instead of a 500 later,
for every JSON endpoint at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from sync.council.records import json_problem


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            text = body.decode("utf-8", "replace")
            # FastAPI turns a JSONDecodeError into its 422 validation error; anything else it
            # would answer with a bare 400, so the two other ways json.loads fails become one.
            try:
                parsed = json.loads(body)
            except UnicodeDecodeError:
                raise json.JSONDecodeError("not UTF-8 text", text, 0) from None
            except RecursionError:
                raise json.JSONDecodeError("nested too deeply to parse", text, 0) from None
            problem = json_problem(parsed)
            if problem is not None:
                raise json.JSONDecodeError(problem, text, 0)
            self._json = parsed
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON bodies go through `records.json_problem` (FastAPI's documented way
    to customise request parsing: a Request subclass via the route class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler

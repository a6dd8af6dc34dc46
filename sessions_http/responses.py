"""How this service answers an HTTP-level error, and the `Cache-Control: no-store` header that
every answer carries (each is about one user's sessions, one request or the service right now:
nothing a cache may keep).

An HTTP-level error is one a request meets instead of a GraphQL execution: a refused origin, an
unknown path or method, a body that cannot be read, a timeout, any REST error. Its body has one
of two shapes, chosen by the request's path in `is_graphql` alone:

- on `/graphql`, GraphQL's own, so that a GraphQL client reads every answer of the endpoint the
  same way: `{"errors": [{"message": "...", "extensions": {"code": "METHOD_NOT_ALLOWED"}}]}`;
- everywhere else (REST, health, unknown paths): `{"error": {"code": "method_not_allowed",
  "message": "..."}}`.

The code is the same word in both: upper case in the GraphQL shape, as GraphQL codes are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

GRAPHQL_PATH = "/graphql"
NO_STORE = {"Cache-Control": "no-store"}
# The 503 message: the client learns it was not its fault, and nothing of our internals.
MESSAGE_TRY_LATER = "This cannot be done right now; try again shortly."

# Starlette's own errors: unknown paths and methods.
_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}

# orjson writes whatever json would refuse or write otherwise as an error (it falls back):
# dataclasses, datetimes and subclasses of str, int, dict and list are handed to json.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def encode_json(content: Any) -> bytes:
    """`content` as Starlette's JSONResponse writes it (compact, UTF-8, no ASCII escapes),
    byte for byte, in a tenth of the time for a sessions page.

    orjson writes the same bytes for every str, int, bool, None, list and dict, and for every
    float but those between 1e-10 and 1e-4 in size, which it spells `1e-6` or `0.00001` where
    json spells `1e-06` and `1e-05`. Those, and what orjson refuses (keys that are not str, ints
    beyond 64 bits, lone surrogates), are written by json, which then also raises what it
    raised before. orjson writes NaN and the infinities as null, where json refuses them: no
    answer holds any (GraphQL's Float refuses them, and geolocations are checked).
    """
    try:
        data = orjson.dumps(content, option=_ORJSON_OPTIONS)
    except TypeError:
        return _json_dumps(content)
    if b"0.0000" in data or (b"e-" in data and _SMALL_EXPONENT.search(data)):
        return _json_dumps(content)
    return data


def _json_dumps(content: Any) -> bytes:
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


# A float as orjson writes it with a one-digit negative exponent (json writes two digits).
_SMALL_EXPONENT = re.compile(rb"\de-\d(?!\d)")


class JsonResponse(JSONResponse):
    """Starlette's JSONResponse, encoded by `encode_json`: the same bytes, sooner."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)


class HttpError(Exception):
    """An error answer, raised wherever it is found (REST, the GraphQL endpoint); `answer_error`,
    the app's handler for it, turns it into the response."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def is_graphql(scope: Scope | None) -> bool:
    """Whether the request is for /graphql, also when the app is served under a root path
    (`uvicorn --root-path /api` makes the path /api/graphql). None: the path is not known yet."""
    if scope is None:
        return False
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return bool(path == GRAPHQL_PATH)


def error_body(scope: Scope | None, code: str, message: str) -> dict[str, Any]:
    """The body of an HTTP-level error of this request (None: not known yet, see serving.py)."""
    if is_graphql(scope):
        return {"errors": [{"message": message, "extensions": {"code": code.upper()}}]}
    return {"error": {"code": code, "message": message}}


def error_response(
    scope: Scope | None,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JsonResponse(
        error_body(scope, code, message),
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


async def answer_error(request: Request, exc: Exception) -> Response:
    """The app's handler for `HttpError`, and for Starlette's HTTPException (404, 405)."""
    if isinstance(exc, HTTPException):
        code = _STARLETTE_CODES.get(exc.status_code, "error")
        exc = HttpError(exc.status_code, code, exc.detail, exc.headers)
    assert isinstance(exc, HttpError)
    return error_response(request.scope, exc.status, exc.code, exc.message, exc.headers)

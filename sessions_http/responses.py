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

from collections.abc import Mapping
from typing import Any

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
    return JSONResponse(
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

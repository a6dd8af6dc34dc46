"""POST /graphql (and GET for queries) following the GraphQL-over-HTTP specification; a browser's
GET without a query gets GraphiQL.

Media types: `application/graphql-response+json` when the client accepts it, else
`application/json`. With the former, a request that could not be executed (syntax, validation,
bad variables) answers 400; with the latter, any well-formed request answers 200, as the
specification asks for legacy clients.
"""

from __future__ import annotations

import functools
import json
from importlib import resources as package_files
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph.execution import execute, is_request_error, retry_after, to_json
from sessions_http.cookie import session_token
from sessions_http.request_info import request_id, user_actor
from sessions_http.responses import NO_STORE, HttpError, JsonResponse

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_BODY_BYTES = 64 * 1024


def _graphiql_page() -> str:
    page = package_files.files("sessions_http") / "static" / "graphiql" / "index.html"
    return page.read_text("utf-8")


def _accepted_media_type(accept: str | None) -> str | None:
    """Which of our two media types the Accept header allows; None if neither."""
    if not accept or not accept.strip():
        return JSON
    offered: dict[str, float] = {}
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        offered[pieces[0].lower()] = max(quality, offered.get(pieces[0].lower(), 0.0))
    graphql_q = offered.get(GRAPHQL_RESPONSE, 0.0)
    json_q = max(offered.get(t, 0.0) for t in (JSON, "application/*", "*/*"))
    if graphql_q <= 0 and json_q <= 0:
        return None
    # The client's preference wins; on a tie, the more precise media type.
    return GRAPHQL_RESPONSE if graphql_q >= json_q else JSON


def _bad_request(message: str) -> HttpError:
    return HttpError(400, "bad_request", message)


class _Params(NamedTuple):
    """What a GraphQL-over-HTTP request asks for."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


def _json_object(value: Any, name: str) -> dict[str, Any] | None:
    """A parameter that is a JSON object: given as one, or as its text (GET); None if absent."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _bad_request(f"`{name}` is not valid JSON.") from None
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise _bad_request(f"`{name}` must be a JSON object.")
    return value


def _parse_params(raw: dict[str, Any]) -> _Params:
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _bad_request("The request has no `query` string.")
    variables = _json_object(raw.get("variables"), "variables")
    # The service reads no extension, but a client that sends a malformed one is told.
    _json_object(raw.get("extensions"), "extensions")
    operation_name = raw.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        # Even a falsy one (0, false): the wrong type, not an absent name.
        raise _bad_request("`operationName` must be a string.")
    operation_name = operation_name or None
    try:
        # JSON's \ud800 escapes decode to lone surrogates, which no answer quoting them could
        # encode as UTF-8.
        json.dumps([query, variables, operation_name], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_request("The request holds invalid Unicode (a lone surrogate).") from None
    return _Params(query, variables, operation_name)


async def _read_json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise HttpError(
            415, "unsupported_media_type", f"POST a JSON body with Content-Type: {JSON}."
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            message = f"The request body is larger than {MAX_BODY_BYTES} bytes."
            raise HttpError(413, "payload_too_large", message)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad_request("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad_request("The body must be a JSON object (batched requests are not supported).")
    return data


def _mutation_over_get(result: ExecutionResult) -> bool:
    return any(isinstance(e.original_error, InvalidOperationTypeError) for e in result.errors or ())


async def graphql_endpoint(request: Request) -> Response:
    """Errors before execution (and a mutation over GET) raise `HttpError`: the app's handler
    answers them in GraphQL's shape (see responses.py)."""
    # HEAD is GET without a body: never a way to run a mutation.
    is_get = request.method in ("GET", "HEAD")
    if is_get and "query" not in request.query_params:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_graphiql_page(), headers=NO_STORE)
    media_type = _accepted_media_type(request.headers.get("accept"))
    if media_type is None:
        message = f"This endpoint answers {GRAPHQL_RESPONSE} or {JSON}."
        raise HttpError(406, "not_acceptable", message)
    params = dict(request.query_params) if is_get else await _read_json_body(request)
    asked = _parse_params(params)
    result = await execute(
        request.app.state.resources,
        query=asked.query,
        token=session_token(request),
        actor_of=functools.partial(user_actor, request),
        variables=asked.variables,
        operation_name=asked.operation_name,
        allowed=(OperationType.QUERY,) if is_get else (OperationType.QUERY, OperationType.MUTATION),
    )
    if is_get and _mutation_over_get(result):
        message = "Only queries can be sent with GET; use POST."
        raise HttpError(405, "method_not_allowed", message, {"Allow": "POST"})
    status = 400 if media_type == GRAPHQL_RESPONSE and is_request_error(result) else 200
    wait = retry_after(result.errors)
    body = to_json(result)
    if "errors" in body:
        # So that a client's report of an error finds its log lines.
        for error in body["errors"]:
            error["extensions"] = {
                **(error.get("extensions") or {}),
                "requestId": request_id(request),
            }
    return JsonResponse(
        body,
        status_code=status,
        media_type=media_type,
        headers=NO_STORE if wait is None else {**NO_STORE, "Retry-After": str(wait)},
    )

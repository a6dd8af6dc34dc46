"""POST /graphql (and GET for queries) following the GraphQL-over-HTTP specification; a browser's
GET without a query gets GraphiQL.

Media types: `application/graphql-response+json` when the client accepts it, else
`application/json`. With the former, a request that could not be executed (syntax, validation,
bad variables) answers 400; with the latter, any well-formed request answers 200, as the
specification asks for legacy clients.
"""

from __future__ import annotations

import json
from importlib import resources as package_files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from graph.execution import execute, is_request_error, retry_after, to_json
from sessions_config.resources import Resources

COOKIE = "psession"
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_BODY_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


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


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An HTTP-level error: the request never became a GraphQL execution."""
    return JSONResponse(
        {"errors": [{"message": message}]},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


class _BadRequest(Exception):
    pass


def _parse_params(raw: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _BadRequest("The request has no `query` string.")
    variables = raw.get("variables")
    if isinstance(variables, str) and variables:
        try:
            variables = json.loads(variables)
        except (ValueError, RecursionError):
            raise _BadRequest("`variables` is not valid JSON.") from None
    if variables in (None, ""):
        variables = None
    elif not isinstance(variables, dict):
        raise _BadRequest("`variables` must be a JSON object.")
    operation_name = raw.get("operationName") or None
    if operation_name is not None and not isinstance(operation_name, str):
        raise _BadRequest("`operationName` must be a string.")
    try:
        # JSON's \ud800 escapes decode to lone surrogates, which no answer quoting them could
        # encode as UTF-8.
        json.dumps([query, variables, operation_name], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _BadRequest("The request holds invalid Unicode (a lone surrogate).") from None
    return query, variables, operation_name


async def _read_json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise _UnsupportedMedia()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _BadRequest("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _BadRequest("The body must be a JSON object (batched requests are not supported).")
    return data


class _UnsupportedMedia(Exception):
    pass


class _TooLarge(Exception):
    pass


async def graphql_endpoint(request: Request) -> Response:
    res: Resources = request.app.state.resources
    # HEAD is GET without a body: never a way to run a mutation.
    is_get = request.method in ("GET", "HEAD")
    if is_get and "query" not in request.query_params:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_graphiql_page(), headers=NO_STORE)
    media_type = _accepted_media_type(request.headers.get("accept"))
    if media_type is None:
        return problem(406, f"This endpoint answers {GRAPHQL_RESPONSE} or {JSON}.")
    try:
        if is_get:
            params: dict[str, Any] = dict(request.query_params)
        else:
            params = await _read_json_body(request)
        query, variables, operation_name = _parse_params(params)
    except _UnsupportedMedia:
        return problem(415, f"POST a JSON body with Content-Type: {JSON}.")
    except _TooLarge:
        return problem(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    except _BadRequest as exc:
        return problem(400, str(exc))

    allowed = (OperationType.QUERY,) if is_get else (OperationType.QUERY, OperationType.MUTATION)
    result = await execute(
        res,
        query=query,
        token=request.cookies.get(COOKIE),
        variables=variables,
        operation_name=operation_name,
        allowed=allowed,
    )
    if (
        is_get
        and result.errors
        and any(isinstance(e.original_error, InvalidOperationTypeError) for e in result.errors)
    ):
        return problem(405, "Only queries can be sent with GET; use POST.", {"Allow": "POST"})
    status = 400 if media_type == GRAPHQL_RESPONSE and is_request_error(result) else 200
    wait = retry_after(result.errors)
    return JSONResponse(
        to_json(result),
        status_code=status,
        media_type=media_type,
        headers=NO_STORE if wait is None else {**NO_STORE, "Retry-After": str(wait)},
    )

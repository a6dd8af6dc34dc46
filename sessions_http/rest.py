"""The v1 REST routes, each made by running a GraphQL document in-process.

GET /v1/users/me/sessions: the documented v1 JSON. The document's aliases already spell the v1
keys (snake_case), so the shim only flattens the history connection.
DELETE /v1/users/me/sessions/{id}: revokes one session. DELETE /v1/users/me/sessions: revokes all
but the current one. Nothing here reads storage: it all goes through the schema.

Errors are raised as `HttpError`, which the app's handler answers as
`{"error": {"code", "message"}}` with `Cache-Control: no-store` (see responses.py).
"""

from __future__ import annotations

import functools
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.types.graphql import OperationType

from graph.errors import UNAVAILABLE
from graph.execution import compile_at_start, execute, first_code, retry_after
from resolvers.errors import BadUserInput, CurrentSession, NotFound, RateLimited, Unauthenticated
from resolvers.history import DEFAULT_PAGE, MAX_PAGE
from sessions_http.cookie import session_token
from sessions_http.request_info import user_actor
from sessions_http.responses import MESSAGE_TRY_LATER, NO_STORE, HttpError, JsonResponse

_GEO = """
  city
  region_name: regionName
  country_code: countryCode
  lat
  lon
  isp
  org
  is_mobile: isMobile
  is_proxy: isProxy
  is_hosting: isHosting
"""

SESSIONS_DOCUMENT = f"""
query RestV1Sessions($historyLimit: Int!) {{
  me {{
    sessions {{
      token_suffix: tokenSuffix
      created_at: createdAt
      expires_at: expiresAt
      client_ip: clientIp
      user_agent: userAgent
      geo {{ {_GEO} }}
      is_current: isCurrent
    }}
    history(first: $historyLimit) {{
      edges {{
        node {{
          token_suffix: tokenSuffix
          created_at: createdAt
          client_ip: clientIp
          user_agent: userAgent
          geo {{ {_GEO} }}
        }}
      }}
    }}
  }}
}}
"""


REVOKE_DOCUMENT = """
mutation RestV1RevokeSession($id: ID!) { revokeSession(id: $id) }
"""

REVOKE_OTHERS_DOCUMENT = """
mutation RestV1RevokeOtherSessions { revokeOtherSessions }
"""


def compile_documents() -> None:
    """Plans the GET route's query before the first request (the mutations run through
    Strawberry: the compiler takes queries only)."""
    compile_at_start(SESSIONS_DOCUMENT)


# GraphQL error code -> (HTTP status, REST error code). Anything else is our failure: 503.
_STATUS = {
    Unauthenticated.code: (401, "unauthenticated"),
    NotFound.code: (404, "not_found"),
    CurrentSession.code: (409, "current_session"),
    BadUserInput.code: (400, "bad_request"),
    RateLimited.code: (429, "rate_limited"),
    UNAVAILABLE: (503, "unavailable"),
}


async def _run(
    request: Request,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    mutation: bool = False,
) -> dict[str, Any]:
    """Runs a document for this request: its data. Its errors raise the REST error for them."""
    result = await execute(
        request.app.state.resources,
        query=document,
        token=session_token(request),
        actor_of=functools.partial(user_actor, request),
        variables=variables,
        allowed=(OperationType.MUTATION,) if mutation else (OperationType.QUERY,),
    )
    if result.errors or not result.data:
        raise _rest_error(result.errors)
    return result.data


def _rest_error(errors: list[GraphQLError] | None) -> HttpError:
    status, code = _STATUS.get(first_code(errors) or "", (503, "unavailable"))
    if status == 503 or not errors:
        # The schema already logged the cause; the client learns it was not its fault.
        return HttpError(503, "unavailable", MESSAGE_TRY_LATER)
    wait = retry_after(errors)
    headers = {"Retry-After": str(wait)} if wait is not None else None
    return HttpError(status, code, errors[0].message, headers)


def _history_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    # ASCII digits only, and few of them: int() refuses digits like "²" and over 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not (0 <= int(raw) <= MAX_PAGE):
        raise HttpError(400, "bad_request", f"limit must be a whole number from 0 to {MAX_PAGE}.")
    return int(raw)


async def list_sessions(request: Request) -> JSONResponse:
    data = await _run(request, SESSIONS_DOCUMENT, {"historyLimit": _history_limit(request)})
    me = data["me"]
    body = {
        "sessions": me["sessions"],
        "history": [edge["node"] for edge in me["history"]["edges"]],
    }
    return JsonResponse(body, headers=NO_STORE)


async def revoke_session(request: Request) -> Response:
    await _run(request, REVOKE_DOCUMENT, {"id": request.path_params["session_id"]}, mutation=True)
    return Response(status_code=204, headers=NO_STORE)


async def revoke_other_sessions(request: Request) -> JSONResponse:
    data = await _run(request, REVOKE_OTHERS_DOCUMENT, mutation=True)
    return JsonResponse({"count": data["revokeOtherSessions"]}, headers=NO_STORE)


async def sessions_collection(request: Request) -> Response:
    """/v1/users/me/sessions: GET lists, DELETE revokes all others. One route, so a 405 there
    names both methods in its Allow header."""
    if request.method == "DELETE":
        return await revoke_other_sessions(request)
    return await list_sessions(request)

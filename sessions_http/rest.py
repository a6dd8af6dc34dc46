"""The v1 REST routes, each made by running a GraphQL document in-process.

GET /v1/users/me/sessions: the documented v1 JSON. The document's aliases already spell the v1
keys (snake_case), so the shim only flattens the history connection.
DELETE /v1/users/me/sessions/{id}: revokes one session. DELETE /v1/users/me/sessions: revokes all
but the current one. Nothing here reads storage: it all goes through the schema.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.types.graphql import OperationType

from graph.execution import execute, first_code, retry_after
from sessions_http.graphql_endpoint import COOKIE, NO_STORE

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 200

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

# GraphQL error code -> (HTTP status, REST error code). Anything else is our failure: 503.
_STATUS = {
    "UNAUTHENTICATED": (401, "unauthenticated"),
    "NOT_FOUND": (404, "not_found"),
    "CURRENT_SESSION": (409, "current_session"),
    "BAD_USER_INPUT": (400, "bad_request"),
    "RATE_LIMITED": (429, "rate_limited"),
    "UNAVAILABLE": (503, "unavailable"),
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape of the REST routes: {"error": {"code", "message"}}."""
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


async def _run(
    request: Request,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    mutation: bool = False,
) -> dict[str, Any] | JSONResponse:
    """Runs a document for this request: its data, or the REST error response for its errors."""
    result = await execute(
        request.app.state.resources,
        query=document,
        token=request.cookies.get(COOKIE),
        variables=variables,
        allowed=(OperationType.MUTATION,) if mutation else (OperationType.QUERY,),
    )
    if result.errors or not result.data:
        error = result.errors[0] if result.errors else None
        status, code = _STATUS.get(first_code(result.errors) or "", (503, "unavailable"))
        if status == 503 or error is None:
            # The schema already logged the cause; the client learns it was not its fault.
            return error_response(503, code, "This cannot be done right now; try again shortly.")
        wait = retry_after(result.errors)
        headers = {"Retry-After": str(wait)} if wait is not None else None
        return error_response(status, code, error.message, headers=headers)
    return result.data


def _history_limit(request: Request) -> int | JSONResponse:
    raw = request.query_params.get("limit")
    if raw is None:
        return HISTORY_LIMIT
    # ASCII digits only, and few of them: int() refuses digits like "²" and over 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not (
        0 <= int(raw) <= MAX_HISTORY_LIMIT
    ):
        return error_response(
            400, "bad_request", f"limit must be a whole number from 0 to {MAX_HISTORY_LIMIT}."
        )
    return int(raw)


async def list_sessions(request: Request) -> JSONResponse:
    limit = _history_limit(request)
    if isinstance(limit, JSONResponse):
        return limit
    data = await _run(request, SESSIONS_DOCUMENT, {"historyLimit": limit})
    if isinstance(data, JSONResponse):
        return data
    me = data["me"]
    body = {
        "sessions": me["sessions"],
        "history": [edge["node"] for edge in me["history"]["edges"]],
    }
    return JSONResponse(body, headers=NO_STORE)


async def revoke_session(request: Request) -> Response:
    data = await _run(
        request, REVOKE_DOCUMENT, {"id": request.path_params["session_id"]}, mutation=True
    )
    if isinstance(data, JSONResponse):
        return data
    return Response(status_code=204, headers=NO_STORE)


async def revoke_other_sessions(request: Request) -> JSONResponse:
    data = await _run(request, REVOKE_OTHERS_DOCUMENT, mutation=True)
    if isinstance(data, JSONResponse):
        return data
    return JSONResponse({"count": data["revokeOtherSessions"]}, headers=NO_STORE)


async def sessions_collection(request: Request) -> Response:
    """/v1/users/me/sessions: GET lists, DELETE revokes all others. One route, so a 405 there
    names both methods in its Allow header."""
    if request.method == "DELETE":
        return await revoke_other_sessions(request)
    return await list_sessions(request)

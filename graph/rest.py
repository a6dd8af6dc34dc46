"""GET /v1/users/me/sessions: the documented v1 JSON, made by running one GraphQL document.

The document's aliases already spell the v1 keys (snake_case), so the shim only flattens the
history connection. Nothing here reads storage: it all goes through the schema.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from graph.errors import MESSAGE_UNAUTHENTICATED
from graph.execution import execute, first_code
from graph.graphql_http import COOKIE, NO_STORE
from graph.resources import Resources

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50

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


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error shape of the REST routes: {"error": {"code", "message"}}."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=NO_STORE
    )


async def list_sessions(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    result = await execute(
        res,
        query=SESSIONS_DOCUMENT,
        token=request.cookies.get(COOKIE),
        variables={"historyLimit": HISTORY_LIMIT},
    )
    me: dict[str, Any] | None = (result.data or {}).get("me")
    if result.errors or me is None:
        code = first_code(result.errors)
        if code == "UNAUTHENTICATED":
            return error_response(401, "unauthenticated", MESSAGE_UNAUTHENTICATED)
        # The schema already logged the cause; the client learns only that it was not its fault.
        return error_response(
            503, "unavailable", "Sessions cannot be listed right now; try again shortly."
        )
    body = {
        "sessions": me["sessions"],
        "history": [edge["node"] for edge in me["history"]["edges"]],
    }
    return JSONResponse(body, headers=NO_STORE)

"""The OpenAPI 3.1 description of the REST routes (v1, the admin API, health), served at
/openapi.json and shown at /docs (Redoc, served by the app itself). GraphQL is described by its
own schema (schema.graphql, GraphiQL's explorer).

tests/sessions_http/test_openapi.py keeps it true: it validates real answers of every route,
status and documented header against it."""

from __future__ import annotations

import functools
from importlib import resources as package_files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from resolvers.history import DEFAULT_PAGE, MAX_PAGE
from sessions_http.admin import DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE, MAX_NUMBER
from sessions_http.responses import NO_STORE, JsonResponse
from store.sessions import MAX_USER_ID

TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    "description": "UTC, to the second, with a trailing Z: 2026-03-01T10:00:00Z.",
}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


GEO = _object(
    {
        "city": _nullable("string"),
        "region_name": _nullable("string"),
        "country_code": _nullable("string", description="ISO 3166-1 alpha-2, e.g. US."),
        "lat": _nullable("number"),
        "lon": _nullable("number"),
        "isp": _nullable("string"),
        "org": _nullable("string"),
        "is_mobile": _nullable("boolean"),
        "is_proxy": _nullable("boolean"),
        "is_hosting": _nullable("boolean"),
    }
)
_GEO_OR_NULL = {"oneOf": [_ref("Geo"), {"type": "null"}], "description": "Null when unknown."}
SESSION = _object(
    {
        "token_suffix": {"type": "string", "description": "The last 6 characters of the token."},
        "created_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
        "client_ip": {"type": "string"},
        "user_agent": {"type": "string"},
        "geo": _GEO_OR_NULL,
        "is_current": {"type": "boolean", "description": "The session making this request."},
    }
)
PAST_SESSION = _object(
    {
        "token_suffix": {"type": "string"},
        "created_at": TIMESTAMP,
        "client_ip": {"type": "string"},
        "user_agent": {"type": "string"},
        "geo": _GEO_OR_NULL,
    }
)
SESSIONS = _object(
    {
        "sessions": {"type": "array", "items": _ref("Session"), "description": "Newest first."},
        "history": {"type": "array", "items": _ref("PastSession"), "description": "Newest first."},
    }
)
ERROR = _object(
    {
        "error": _object(
            {
                "code": {"type": "string", "description": "Stable, e.g. unauthenticated."},
                "message": {"type": "string", "description": "For people."},
            }
        )
    }
)
COUNT = _object({"count": {"type": "integer", "minimum": 0}})
ADMIN_SESSION = _object(
    {
        "id": {"type": "string", "format": "uuid"},
        "user_id": {"type": "string"},
        "token_suffix": {"type": "string"},
        "created_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
        "last_seen_at": {"oneOf": [TIMESTAMP, {"type": "null"}]},
        "ended_at": {"oneOf": [TIMESTAMP, {"type": "null"}]},
        "end_reason": {"enum": ["logout", "revoked", "expired", None]},
        "client_ip": {"type": "string"},
        "user_agent": {"type": "string"},
        "geo": _GEO_OR_NULL,
        "active": {"type": "boolean"},
    }
)
ADMIN_USER_SESSIONS = _object(
    {
        "user_id": {"type": "string"},
        "sessions": {"type": "array", "items": _ref("AdminSession")},
        "history": {"type": "array", "items": _ref("AdminSession")},
        "history_next_cursor": _nullable("string", description="Pass as `after`; null: no more."),
    }
)
AUDIT_ENTRY = _object(
    {
        "seq": {"type": "integer"},
        "at": TIMESTAMP,
        "actor": _object(
            {
                "type": {"enum": ["admin", "user", "cli"]},
                "name": _nullable("string"),
                "key_id": _nullable("string"),
            }
        ),
        "action": {"type": "string"},
        "user_id": _nullable("string"),
        "session_id": _nullable("string"),
        "request_id": _nullable("string"),
        "client_addr": _nullable("string"),
        "details": _nullable("object"),
    }
)
AUDIT_PAGE = _object(
    {
        "entries": {"type": "array", "items": _ref("AuditEntry")},
        "next_before": _nullable("integer", description="Pass as `before`; null: no more."),
    }
)
HEALTH = {
    "type": "object",
    "properties": {"status": {"enum": ["ok", "ready", "unavailable"]}},
    "required": ["status"],
    "additionalProperties": {
        "enum": ["ok", "unavailable", "lagging"],
        "description": "/readyz: each dependency (postgres, redis, postgres_replica).",
    },
}

_HEADERS = {
    "Cache-Control": {
        "description": "Always `no-store`: answers hold one user's data.",
        "schema": {"type": "string", "const": "no-store"},
    },
    "X-Request-ID": {
        "description": "The request's id: the client's own when it sent a sane one.",
        "schema": {"type": "string"},
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
_ALLOW = {"Allow": {"description": "The methods the path takes.", "schema": {"type": "string"}}}


def _json(schema: str, description: str, **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_HEADERS, **headers},
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _error(description: str, **headers: Any) -> dict[str, Any]:
    return _json("Error", description, **headers)


_COMMON_ERRORS = {
    "405": _error("Method not allowed.", **_ALLOW),
    "503": _error("Storage is unavailable; try again shortly.", **_RETRY_AFTER),
}
_USER_ERRORS = {
    "401": _error("No active session for the psession cookie (`unauthenticated`)."),
    "429": _error("Too many requests of this user at once (`rate_limited`).", **_RETRY_AFTER),
    **_COMMON_ERRORS,
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "How to authenticate: `Bearer`, with an admin key.",
        "schema": {"type": "string", "const": "Bearer"},
    }
}
_ADMIN_ERRORS = {
    "401": _error(
        "No admin key, or an unknown or revoked one (`unauthenticated`).", **_WWW_AUTHENTICATE
    ),
    "403": _error("The key lacks the scope (`forbidden`)."),
    "429": _error("Too many failed key checks from this address (`rate_limited`).", **_RETRY_AFTER),
    **_COMMON_ERRORS,
}
_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A session's id (a UUID).",
}
# As the store keeps them: NUL is in no user id.
_USER_ID_TEXT = {"type": "string", "maxLength": MAX_USER_ID, "pattern": r"^[^\x00]*$"}
_USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {**_USER_ID_TEXT, "minLength": 1},
}
_FORBIDDEN_ORIGIN = _error(
    "The page's Origin is not allowed to change state (`forbidden_origin`): cross-site forgery."
)


def _paths() -> dict[str, Any]:
    user: list[dict[str, list[str]]] = [{"psession": []}]
    read: list[dict[str, list[str]]] = [{"adminKey": []}]
    return {
        "/v1/users/me/sessions": {
            "get": {
                "summary": "Your active sessions, located, and your past ones",
                "security": user,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
                        "description": f"Past sessions to list (default {DEFAULT_PAGE}).",
                    }
                ],
                "responses": {
                    "200": _json("Sessions", "The signed-in user's sessions."),
                    "400": _error("`limit` is not a whole number in range (`bad_request`)."),
                    **_USER_ERRORS,
                },
            },
            "delete": {
                "summary": "Sign out of all your other sessions",
                "security": user,
                "responses": {
                    "200": _json("Count", "How many sessions were revoked."),
                    "403": _FORBIDDEN_ORIGIN,
                    **_USER_ERRORS,
                },
            },
        },
        "/v1/users/me/sessions/{session_id}": {
            "delete": {
                "summary": "Revoke one of your other sessions",
                "security": user,
                "parameters": [_SESSION_ID],
                "responses": {
                    "204": {
                        "description": "Revoked (also when it already was).",
                        "headers": _HEADERS,
                    },
                    "403": _FORBIDDEN_ORIGIN,
                    "404": _error("You have no session with this id (`not_found`)."),
                    "409": _error("It is the session making the request (`current_session`)."),
                    **_USER_ERRORS,
                },
            }
        },
        "/admin/v1/users/{user_id}/sessions": {
            "get": {
                "summary": "A user's active sessions and a page of their past ones",
                "security": read,
                "parameters": [
                    _USER_ID,
                    {
                        "name": "history_limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
                        "description": f"Past sessions to list (default {DEFAULT_PAGE}).",
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "The `history_next_cursor` of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json("AdminUserSessions", "The user's sessions."),
                    "400": _error("A bad parameter (`bad_request`)."),
                    **_ADMIN_ERRORS,
                },
            },
            "delete": {
                "summary": "Sign a user out everywhere (needs sessions:write)",
                "security": read,
                "parameters": [
                    _USER_ID,
                    {
                        "name": "except",
                        "in": "query",
                        "schema": {"type": "string", "format": "uuid"},
                        "description": "A session of the user's to keep.",
                    },
                ],
                "responses": {
                    "200": _json("Count", "How many sessions were ended."),
                    "400": _error("`except` is not a session id (`bad_request`)."),
                    **_ADMIN_ERRORS,
                },
            },
        },
        "/admin/v1/sessions/{session_id}": {
            "get": {
                "summary": "One session, active or past",
                "security": read,
                "parameters": [_SESSION_ID],
                "responses": {
                    "200": _json("AdminSession", "The session."),
                    "404": _error("No session has this id (`not_found`)."),
                    **_ADMIN_ERRORS,
                },
            },
            "delete": {
                "summary": "Revoke a session (needs sessions:write)",
                "security": read,
                "parameters": [_SESSION_ID],
                "responses": {
                    "204": {
                        "description": "Revoked (also when it already was).",
                        "headers": _HEADERS,
                    },
                    "404": _error("No session has this id (`not_found`)."),
                    **_ADMIN_ERRORS,
                },
            },
        },
        "/admin/v1/audit": {
            "get": {
                "summary": "The audit trail, newest first",
                "security": read,
                "parameters": [
                    {
                        "name": "user_id",
                        "in": "query",
                        "schema": _USER_ID_TEXT,
                        "description": "Only the entries about this user (empty: all).",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_AUDIT_PAGE},
                        "description": f"Entries to list (default {DEFAULT_AUDIT_PAGE}).",
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER},
                        "description": "The `next_before` of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json("AuditPage", "A page of the trail."),
                    "400": _error("A bad parameter (`bad_request`)."),
                    **_ADMIN_ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "The process answers",
                "responses": {"200": _json("Health", '`{"status": "ok"}`.')},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Postgres and Redis answer",
                "responses": {
                    "200": _json("Health", "Both answer."),
                    "503": _json("Health", "One does not; the body names it."),
                },
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sessions API",
            "version": "1",
            "description": "Which of a user's sessions are active, where they are, and which "
            "have ended; and the admin API for login services and support. The same data over "
            "GraphQL: POST /graphql (schema.graphql).",
        },
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "psession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "psession",
                    "description": "The session cookie the portal's login service sets.",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin key (`sessions-api admin-keys create`), with the "
                    "scope the route needs: sessions:read, or sessions:write to revoke.",
                },
            },
            "schemas": {
                "Geo": GEO,
                "Session": SESSION,
                "PastSession": PAST_SESSION,
                "Sessions": SESSIONS,
                "Error": ERROR,
                "Count": COUNT,
                "AdminSession": ADMIN_SESSION,
                "AdminUserSessions": ADMIN_USER_SESSIONS,
                "AuditEntry": AUDIT_ENTRY,
                "AuditPage": AUDIT_PAGE,
                "Health": HEALTH,
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return JsonResponse(document(), headers={"Cache-Control": "public, max-age=300"})


# Redoc styles itself inline and searches in a worker; nothing comes from elsewhere (its
# "Redocly" logo, which it would fetch from a CDN, is not loaded).
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def docs(request: Request) -> Response:
    page = package_files.files("sessions_http") / "static" / "redoc" / "index.html"
    headers = {**NO_STORE, "Content-Security-Policy": DOCS_POLICY}
    return HTMLResponse(page.read_text("utf-8"), headers=headers)

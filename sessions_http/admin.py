"""The admin API, JSON under /admin/v1 (README, "For login services and support"), for
login services and support staff. Authenticated by admin keys (admin_auth.py), never by a
cookie; no CORS. Every call is in the audit trail: reads here, changes with the change itself
(store/records.py's end statement).

GET    /admin/v1/users/{user_id}/sessions[?history_limit=N&after=CURSOR]   sessions:read
GET    /admin/v1/sessions/{id}                                             sessions:read
DELETE /admin/v1/sessions/{id}                                             sessions:write
DELETE /admin/v1/users/{user_id}/sessions[?except=SESSION_ID]             sessions:write
GET    /admin/v1/audit[?user_id=U&limit=N&before=SEQ]                      sessions:read
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from resolvers.errors import BadUserInput
from resolvers.history import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from sessions_config.resources import Resources
from sessions_http.admin_auth import admin_actor
from sessions_http.responses import NO_STORE, HttpError, JsonResponse
from store import admin
from store.admin import Scope
from store.models import (
    SessionRecord,
    canonical_session_id,
    format_timestamp,
    session_fields,
    utcnow,
)
from store.sessions import MAX_USER_ID

PREFIX = "/admin/v1"
# A number in a query string: ASCII digits, and small enough for a bigint.
_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_NUMBER = 10**18 - 1  # the largest _NUMBER, for /openapi.json
DEFAULT_AUDIT_PAGE = 100
MAX_AUDIT_PAGE = 500


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/users/{{user_id}}/sessions", user_sessions, methods=["GET", "DELETE"]),
        Route(f"{PREFIX}/sessions/{{session_id}}", one_session, methods=["GET", "DELETE"]),
        Route(f"{PREFIX}/audit", audit_trail, methods=["GET"]),
    ]


def _answer(request: Request, body: dict[str, Any], status: int = 200) -> Response:
    # (X-Request-ID is added to every answer by sessions_http/access.py.)
    return JsonResponse(body, status_code=status, headers=NO_STORE)


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def _user_id(request: Request) -> str:
    return _checked_user_id(str(request.path_params["user_id"]))


def _checked_user_id(user_id: str) -> str:
    """A user id as the store keeps them (store/sessions.py): no user has another, and Postgres
    text cannot hold a NUL."""
    if not 1 <= len(user_id) <= MAX_USER_ID or "\x00" in user_id:
        message = f"A user id is 1 to {MAX_USER_ID} characters, without NUL."
        raise HttpError(400, "bad_request", message)
    return user_id


def _session_id(text: str | None, what: str) -> str:
    canonical = canonical_session_id(text or "")
    if canonical is None:
        raise HttpError(400, "bad_request", f"{what} is not a session id.")
    return canonical


def _int(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _NUMBER.fullmatch(raw) or not 0 <= int(raw) <= top:
        raise HttpError(400, "bad_request", f"`{name}` must be a number from 0 to {top}.")
    return int(raw)


async def _located(resources: Resources, sessions: Sequence[SessionRecord]) -> list[Any]:
    places = await resources.geo.many([s.client_ip for s in sessions])
    return [asdict(p) if p is not None else None for p in places]


def session_json(record: SessionRecord, geo: Any) -> dict[str, Any]:
    """A session as the admin API shows it: v1's fields, with its id, user, lastSeenAt, and
    its end (an expired one ends at its expiry, as history shows it)."""
    active = record.ended_at is None and record.expires_at > utcnow()
    ended_at = None if active else (record.ended_at or record.expires_at)
    return {
        **session_fields(record),
        "ended_at": format_timestamp(ended_at) if ended_at is not None else None,
        "end_reason": None if active else (record.end_reason or "expired"),
        "geo": geo,
        "active": active,
    }


async def user_sessions(request: Request) -> Response:
    if request.method == "DELETE":
        return await _end_all(request)
    actor = await admin_actor(request, "sessions:read")
    resources = _resources(request)
    user_id = _user_id(request)
    first = _int(request, "history_limit", DEFAULT_PAGE, MAX_PAGE)
    after_text = request.query_params.get("after")
    try:
        after = decode_cursor(after_text) if after_text else None
    except BadUserInput as exc:
        raise HttpError(400, "bad_request", exc.message) from None
    store = resources.store
    active = await store.list_active_for_user(user_id=user_id)
    history = await store.list_history_for_user(user_id=user_id, first=first, after=after)
    places = await _located(resources, [*active, *history.records])
    await admin.record(store.pool, actor, "user.sessions.viewed", user_id=user_id)
    shown = [session_json(r, g) for r, g in zip([*active, *history.records], places, strict=True)]
    last = history.records[-1] if history.records else None
    return _answer(
        request,
        {
            "user_id": user_id,
            "sessions": shown[: len(active)],
            "history": shown[len(active) :],
            "history_next_cursor": (
                encode_cursor(last) if history.has_next and last is not None else None
            ),
        },
    )


async def _end_all(request: Request) -> Response:
    actor = await admin_actor(request, "sessions:write")
    resources = _resources(request)
    user_id = _user_id(request)
    keep_text = request.query_params.get("except")
    keep = _session_id(keep_text, "`except`") if keep_text is not None else None
    count = await resources.store.end_all(
        user_id=user_id, reason="revoked", except_session_id=keep, actor=actor
    )
    await admin.record(
        resources.store.pool,
        actor,
        "user.sessions.end_all",
        user_id=user_id,
        details={"count": count, "reason": "revoked", "except": keep},
    )
    return _answer(request, {"count": count})


async def one_session(request: Request) -> Response:
    needs: Scope = "sessions:write" if request.method == "DELETE" else "sessions:read"
    actor = await admin_actor(request, needs)
    resources = _resources(request)
    store = resources.store
    wanted = canonical_session_id(str(request.path_params["session_id"]))
    if request.method == "DELETE":
        before = await store.find(wanted) if wanted else None
        if before is None:
            raise HttpError(404, "not_found", "No session has this id.")
        ended = await store.revoke_by_id(before.id, actor=actor)
        if ended is None:
            raise HttpError(404, "not_found", "No session has this id.")
        if before.ended_at is not None or before.expires_at <= utcnow():
            # Nothing ended now, so the end left no audit row: this call leaves its own.
            await admin.record(
                store.pool,
                actor,
                "session.revoked",
                user_id=before.user_id,
                session_id=before.id,
                details={"already_ended": True},
            )
        return Response(status_code=204, headers=NO_STORE)
    record = await store.find(wanted) if wanted else None
    if record is None:
        raise HttpError(404, "not_found", "No session has this id.")
    await admin.record(
        store.pool, actor, "session.viewed", user_id=record.user_id, session_id=record.id
    )
    (geo,) = await _located(resources, [record])
    return _answer(request, session_json(record, geo))


async def audit_trail(request: Request) -> Response:
    actor = await admin_actor(request, "sessions:read")
    store = _resources(request).store
    user_text = request.query_params.get("user_id")
    user_id = _checked_user_id(user_text) if user_text else None
    limit = _int(request, "limit", DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE)
    before_text = request.query_params.get("before")
    if before_text is not None and not _NUMBER.fullmatch(before_text):
        raise HttpError(400, "bad_request", "`before` is the `next_before` of a previous page.")
    entries = await admin.audit_page(
        store.pool,
        user_id=user_id,
        first=limit,
        before_seq=int(before_text) if before_text else None,
    )
    await admin.record(store.pool, actor, "audit.viewed", user_id=user_id)
    return _answer(
        request,
        {
            "entries": [e.as_json() for e in entries],
            "next_before": entries[-1].seq if len(entries) == limit and entries else None,
        },
    )

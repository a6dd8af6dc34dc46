"""The psession cookie: the login service sets it, both endpoints read it. Its value is the
session's token, which is never logged and never stored (store/ keeps only its hash)."""

from __future__ import annotations

from starlette.requests import Request

COOKIE = "psession"


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)

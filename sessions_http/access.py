"""Each request's id, and its access-log line.

The id is the client's `X-Request-ID` when it is a sane one (1 to 128 of `A-Z a-z 0-9 . _ : -`),
else a new one. It is echoed in the response's `X-Request-ID`, written on every log line of the
request (sessions_config/logs.py), in GraphQL errors' `extensions.requestId`, and in the audit
trail. The access line says method, route template, status, duration and id: never the path's
values, the query string, a header or a cookie."""

from __future__ import annotations

import logging
import re
import secrets

from starlette.types import Scope

from sessions_config.logs import REQUEST_ID

ACCESS = logging.getLogger("sessions_api.access")
HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The request's id (see above), kept in the scope's state and the logging context."""
    chosen: str | None = None
    for name, value in scope["headers"]:
        if name == HEADER:
            if _SANE.fullmatch(value):
                chosen = value.decode("ascii")
            break
    if chosen is None:
        chosen = secrets.token_hex(8)
    scope.setdefault("state", {})["request_id"] = chosen
    REQUEST_ID.set(chosen)
    return chosen


def log_access(method: str, route: str, status: int, seconds: float) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("%s %s %d %.1fms", method, route, status, seconds * 1000)

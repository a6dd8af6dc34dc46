"""Cross-site request forgery guard for cookie-authenticated state changes.

Browsers send `Origin` with every cross-site POST and DELETE. A request with an unsafe method
whose Origin is neither this service's own nor in ALLOWED_ORIGINS is refused with 403
(`forbidden_origin`, in the path's error shape: see responses.py) before it reaches any handler.
So is one with no Origin that the browser marks `Sec-Fetch-Site: cross-site`.
Requests without either header come from non-browser clients, which cannot be forged this way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sessions_http.asgi import HttpMiddleware
from sessions_http.responses import error_response

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSAL = "Requests that change state are only accepted from the portal's own pages."


def _web_netloc(origin: str) -> str | None:
    """host[:port] of an http(s) origin; None for any other scheme (no web page has one)."""
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. `http://[`: not an origin any browser sends
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") else None


class AllowedOrigins:
    """Which pages may act with the user's cookie: ALLOWED_ORIGINS, and this service's own."""

    def __init__(self, allowed_origins: Iterable[str]) -> None:
        self.allowed = {o.lower().rstrip("/") for o in allowed_origins}

    def refused(self, method: str, headers: Headers) -> str | None:
        """Why this request must be refused, or None."""
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site":
                return "a cross-site request without Origin"
            return None
        origin = origin.lower().rstrip("/")
        if origin in self.allowed:
            return None
        # Same origin as this service (e.g. its own GraphiQL page). Browsers always send the
        # real Host; only non-browser clients, which are not forgery victims, can fake it.
        # The scheme is not compared: behind a TLS proxy this service may see http while the
        # page is https.
        if _web_netloc(origin) == headers.get("host", "").lower():
            return None
        return f"Origin {origin[:100]!r} is not allowed"


class OriginCheck(HttpMiddleware):
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        super().__init__(app)
        self.origins = AllowedOrigins(allowed_origins)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = self.origins.refused(scope["method"], Headers(scope=scope))
        if reason is None:
            await self.app(scope, receive, send)
            return
        log.warning("refused %s %s: %s", scope["method"], scope["path"], reason)
        refusal = error_response(scope, 403, "forbidden_origin", REFUSAL)
        await refusal(scope, receive, send)

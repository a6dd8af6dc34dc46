"""What keeps the admin API (/admin/v1) apart from the public one: no CORS answers for it (no
page of any origin may call it from a browser), and with ADMIN_LISTEN, a listener of its own:
admin routes answer 404 on the public listener, and everything else 404 on the admin one."""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from sessions_http.responses import error_response

ADMIN_PATH = "/admin/"


def is_admin_path(scope: Scope) -> bool:
    # The path as Starlette's router reads it (without the root path), so both agree.
    return get_route_path(scope).startswith(ADMIN_PATH)


class PublicCors(CORSMiddleware):
    """Starlette's CORS middleware, for every path but the admin API's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_admin_path(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class ListenerSplit:
    """With an admin port: admin paths there only, and nothing else there. (`serve` refuses an
    ADMIN_LISTEN on the main port, so the port alone tells the listeners apart.)"""

    def __init__(self, app: ASGIApp, admin_port: int | None) -> None:
        self.app = app
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.admin_port is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        on_admin_port = server is not None and server[1] == self.admin_port
        if is_admin_path(scope) == on_admin_port:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        answer = error_response(scope, 404, "not_found", "Not found.")
        await answer(scope, receive, send)

"""REQUEST_TIMEOUT: a bound on the whole of an HTTP request, whatever it waits for.

Each storage call has bounds of its own, but a request may make several in a row: this is the
backstop. When it runs out before the answer has started, the request's work is cancelled and
the client gets 503 in the route's own error shape: `{"errors": [...]}` with the code
UNAVAILABLE on /graphql, `{"error": {"code": "unavailable", ...}}` elsewhere.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.graphql_http import NO_STORE
from graph.rest import error_response

log = logging.getLogger(__name__)

MESSAGE = "This cannot be done right now; try again shortly."


class RequestTimeout:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.timeout(self.seconds)
        answering = False

        async def send_and_disarm(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":
                # Once the answer has started it can only be finished, not replaced.
                answering = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_and_disarm)
        except TimeoutError:
            if answering or not deadline.expired():
                raise  # not ours: a TimeoutError of the app's own
            log.warning(
                "%s %s: no answer within REQUEST_TIMEOUT (%g s); answered 503",
                scope["method"],
                scope["path"],
                self.seconds,
            )
            await _unavailable(scope["path"])(scope, receive, send)


def _unavailable(path: str) -> JSONResponse:
    if path == "/graphql":
        return JSONResponse(
            {"errors": [{"message": MESSAGE, "extensions": {"code": "UNAVAILABLE"}}]},
            status_code=503,
            headers=NO_STORE,
        )
    return error_response(503, "unavailable", MESSAGE)

"""REQUEST_TIMEOUT: a bound on the whole of an HTTP request, whatever it waits for.

Each storage call has bounds of its own, but a request may make several in a row: this is the
backstop. When it runs out before the answer has started, the request's work is cancelled and
the client gets 503 in the route's own error shape: `{"errors": [...]}` with the code
UNAVAILABLE on /graphql, `{"error": {"code": "unavailable", ...}}` elsewhere.

Unless the time ran out while the app was waiting for the client's own body: then the client is
too slow, not we. It gets 408 (`request_timeout`), logged at debug level only, so that slow
senders can neither fill the log nor look like an outage in the metrics.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_http.graphql_endpoint import NO_STORE
from sessions_http.rest import error_response

log = logging.getLogger(__name__)

MESSAGE = "This cannot be done right now; try again shortly."
SLOW_BODY = "The request body did not arrive in time."


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
        reading_body = False

        async def receive_noting_wait() -> Message:
            nonlocal reading_body
            reading_body = True
            message = await receive()
            # Not reset when cancelled: the deadline's cancellation arrives right here.
            reading_body = False
            return message

        async def send_and_disarm(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":
                # Once the answer has started it can only be finished, not replaced.
                answering = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive_noting_wait, send_and_disarm)
        except TimeoutError:
            if answering or not deadline.expired():
                raise  # not ours: a TimeoutError of the app's own
            if reading_body:
                log.debug("%s %s: body not received in time", scope["method"], scope["path"])
                await _slow_body(scope["path"])(scope, receive, send)
                return
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


def _slow_body(path: str) -> JSONResponse:
    # The rest of the body may still come: the connection cannot be used for another request.
    if path == "/graphql":
        return JSONResponse(
            {"errors": [{"message": SLOW_BODY}]},
            status_code=408,
            headers={**NO_STORE, "Connection": "close"},
        )
    return error_response(408, "request_timeout", SLOW_BODY, {"Connection": "close"})

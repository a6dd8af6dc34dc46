"""REQUEST_TIMEOUT: a bound on the whole of an HTTP request, whatever it waits for.

Each storage call has bounds of its own, but a request may make several in a row: this is the
backstop. When it runs out before the answer has started, the request's work is cancelled and
the client gets 503 (`unavailable`, in the path's error shape: see responses.py).

Unless the time ran out while the app was waiting for the client's own body: then the client is
too slow, not we. It gets 408 (`request_timeout`), logged at debug level only, so that slow
senders can neither fill the log nor look like an outage in the metrics.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_http.asgi import HttpMiddleware
from sessions_http.responses import MESSAGE_TRY_LATER, error_response

log = logging.getLogger(__name__)

SLOW_BODY = "The request body did not arrive in time."


class RequestTimeout(HttpMiddleware):
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        super().__init__(app)
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            answer = self._timed_out(scope, reading_body=reading_body)
            await answer(scope, receive, send)

    def _timed_out(self, scope: Scope, *, reading_body: bool) -> Response:
        if reading_body:
            log.debug("%s %s: body not received in time", scope["method"], scope["path"])
            # The rest of the body may still come: the connection cannot serve another request.
            return error_response(scope, 408, "request_timeout", SLOW_BODY, {"Connection": "close"})
        log.warning(
            "%s %s: no answer within REQUEST_TIMEOUT (%g s); answered 503",
            scope["method"],
            scope["path"],
            self.seconds,
        )
        return error_response(scope, 503, "unavailable", MESSAGE_TRY_LATER)

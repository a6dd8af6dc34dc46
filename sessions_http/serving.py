"""How uvicorn serves the app: one set of options for `sessions-api serve` and the tests, and
the HTTP/1.1 protocol behind them, which holds every request head to the HTTP limits.

uvicorn's httptools protocol has no limit on a request head: the parser keeps an unfinished
header in memory however long it grows. `LimitedHttpToolsProtocol` is that protocol (httptools,
uvicorn's fastest) with three checks, made while the head arrives:

- the URL (request target): over `HTTP_MAX_URL_BYTES`, 414;
- the header fields (trailers included), counted as they complete: over `HTTP_MAX_HEADERS` of
  them, or over `HTTP_MAX_HEADER_BYTES` of names and values in all, 431;
- bytes the parser holds without completing anything (an endless header): past the header
  budget, 431. This is what keeps memory bounded.

A refused request never reaches the app. It gets a JSON error (`uri_too_long` or
`headers_too_large`, built by responses.py) and `Connection: close`; then the connection is
half-closed, and what the client still sends is read and dropped for a moment, so that the
client reads the answer rather than a reset.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from sessions_config.settings import Settings, get_settings
from sessions_http.metrics import METHODS, REQUESTS, UNMATCHED
from sessions_http.responses import error_response

log = logging.getLogger(__name__)

# How long a refused connection is still read (and dropped) before it is closed.
REFUSAL_LINGER_SECONDS = 2.0
# Room, beyond the header budget, for the bytes around one field (": ", line ends, spaces).
HEAD_SLACK_BYTES = 1024


@dataclass(frozen=True)
class HttpLimits:
    max_url_bytes: int
    max_header_bytes: int
    max_headers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_url_bytes=settings.http_max_url_bytes,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
        )


# As graphql_endpoint.MAX_BODY_BYTES.
WS_MAX_MESSAGE_BYTES = 64 * 1024


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Options that `uvicorn.run` and `uvicorn.Config` both take, the same wherever the app is
    served. A partial (not an import string) carries the limits, and pickles to the workers."""
    return {
        "http": functools.partial(
            LimitedHttpToolsProtocol, limits=HttpLimits.from_settings(settings)
        ),
        "log_config": None,
        # Our access line (sessions_http/access.py) replaces uvicorn's.
        "access_log": False,
        "log_level": settings.log_level,
        # WebSockets (subscriptions, sessions_http/live.py): flow-controlled sends, so that a
        # client that stops reading holds up its own subscription only; a ping every
        # SUBSCRIPTION_HEARTBEAT seconds, and a peer that does not answer in as long again is
        # disconnected; no message from a client larger than a GraphQL request body.
        "ws": "websockets-sansio",
        "ws_ping_interval": settings.subscription_heartbeat,
        "ws_ping_timeout": settings.subscription_heartbeat,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
    }


class _OverLimit(Exception):
    """Raised in a parser callback: stops the parser at the byte that broke a limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, holding each request head to `limits` (read from the
    settings when not given, so that `uvicorn --http
    sessions_http.serving:LimitedHttpToolsProtocol` works)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HttpLimits.from_settings(get_settings())
        # Read for every header: plain attributes.
        self._max_headers = self.limits.max_headers
        self._max_header_bytes = self.limits.max_header_bytes
        self._header_count = 0
        self._header_bytes = 0
        # Bytes fed to the parser since it last completed anything (a URL piece, a header, a
        # body piece): an endless header grows only this.
        self._unreported_bytes = 0
        self._reported = False
        self._in_head = True  # waiting for, or reading, a request's head (not its body)
        self._over_limit: int | None = None  # the status that refuses the request
        self._linger: asyncio.TimerHandle | None = None

    # -- the checks, as the parser reports what it read ---------------------------------------

    def on_message_begin(self) -> None:
        self._reported = True
        self._header_count = self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._reported = True
        if len(self.url) + len(url) > self.limits.max_url_bytes:
            self._stop(414)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._reported = True
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > self._max_headers or self._header_bytes > self._max_header_bytes:
            self._stop(431)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reported, self._in_head = True, False
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._reported = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reported, self._in_head = True, True
        super().on_message_complete()

    def _stop(self, status: int) -> None:
        self._over_limit = status
        raise _OverLimit

    # -- feeding the parser (uvicorn's data_received, plus the limits) -------------------------

    def data_received(self, data: bytes) -> None:
        if self._over_limit is not None:
            return  # refused: read and dropped until the connection closes
        self._unset_keepalive_if_required()
        self._reported = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._over_limit is not None:
                self._refuse(self._over_limit)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._reported:
            # Some of this chunk completed something; its tail, if any, is counted from the
            # next chunk on (so the parser may hold one chunk more than the budget).
            self._unreported_bytes = 0
            return
        self._unreported_bytes += len(data)
        if self._unreported_bytes > self.limits.max_header_bytes + HEAD_SLACK_BYTES:
            self._over_limit = 431
            self._refuse(431)

    def _refuse(self, status: int) -> None:
        if status == 414:
            code = "uri_too_long"
            message = f"The URL is longer than {self.limits.max_url_bytes} bytes."
        else:
            code = "headers_too_large"
            message = (
                f"The request headers are too large: at most {self.limits.max_headers} fields "
                f"of {self.limits.max_header_bytes} bytes in all are accepted."
            )
        log.debug("refused a request with %s: %s", status, message)
        answering = self._in_head and (self.cycle is None or self.cycle.response_complete)
        if not answering:
            # Trailers of a request whose answer is under way, or done: no second answer.
            self.transport.close()
            return
        method = self._method()
        REQUESTS.labels(method if method in METHODS else "other", UNMATCHED, str(status)).inc()
        # The path is not known yet (a 414 may stop in its middle): the shape of every path but
        # /graphql.
        answer = error_response(None, status, code, message, {"Connection": "close"})
        lines = [STATUS_LINE[status]]
        lines += [
            name + b": " + value + b"\r\n"
            for name, value in [*self.server_state.default_headers, *answer.raw_headers]
        ]
        lines += [b"\r\n", bytes(answer.body)]
        self.transport.write(b"".join(lines))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(REFUSAL_LINGER_SECONDS, self.transport.close)

    def _method(self) -> str:
        try:
            return self.parser.get_method().decode("ascii", "replace")
        except (httptools.HttpParserError, AttributeError):
            return "other"

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

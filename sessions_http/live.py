"""GraphQL subscriptions over WebSocket at /graphql, with the graphql-transport-ws protocol
(Strawberry's handler speaks it; GraphiQL and the graphql-ws client library do too).

Before the WebSocket is accepted, the handshake is refused with an HTTP error in GraphQL's
shape: 403 from a page whose Origin is not allowed (cross-site WebSocket hijacking), 401
without an active psession cookie, 400 without the graphql-transport-ws subprotocol, 429 over
the connection limits, 503 while storage is down. Only subscriptions run over it; queries and
mutations go over HTTP.

The server closes an accepted connection with (README, "Live updates"):
- 4401 when the session it signed in with ends (signed out, revoked, expired);
- 1013 when the client let SUBSCRIPTION_QUEUE events pile up unread (it reconnects and reloads);
- 1012 when the server shuts down (uvicorn sends it);
and with the protocol's own codes for protocol errors (4400, 4408, 4409, 4429). A peer that
does not answer WebSocket pings (every SUBSCRIPTION_HEARTBEAT seconds) is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Any

from starlette.datastructures import Headers
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from graph.context import LiveContext
from graph.schema import schema
from sessions_config.resources import Resources
from sessions_events.live import SESSION_ENDED, Connection, LiveEvents, TooMany
from sessions_http.cookie import session_token
from sessions_http.origin_check import REFUSAL, AllowedOrigins
from sessions_http.responses import error_response
from store.errors import describe_outage, outage_of
from store.models import utcnow

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
# Seconds a client has to send connection_init after the WebSocket is accepted.
INIT_TIMEOUT = timedelta(seconds=10)
# Seconds between two checks that the connection's session is still active: its end is
# normally heard at once (sessions_events/live.py); this bounds how long a missed one lasts.
RECHECK_INTERVAL = 60.0
# Seconds the closing message may take to go out to a client that stopped reading.
CLOSE_WAIT = 1.0


async def live_endpoint(websocket: WebSocket) -> None:
    resources: Resources = websocket.app.state.resources
    hub: LiveEvents = websocket.app.state.live
    origins: AllowedOrigins = websocket.app.state.origins
    try:
        connection = await _admitted(websocket, resources, hub, origins)
    except _Refusal as refusal:
        await _refuse(websocket, refusal)
        return
    try:
        await websocket.accept(subprotocol=PROTOCOL)
        await _serve(websocket, resources, connection)
    finally:
        hub.disconnect(connection)


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _admitted(
    websocket: WebSocket, resources: Resources, hub: LiveEvents, origins: AllowedOrigins
) -> Connection:
    """The connection of the cookie's session; _Refusal if the handshake is to be refused."""
    headers = Headers(scope=websocket.scope)
    # A WebSocket handshake is a GET, but one that acts with the cookie: checked as a POST is.
    why = origins.refused("POST", headers)
    if why is not None:
        log.warning("refused a WebSocket at %s: %s", websocket.url.path, why)
        raise _Refusal(403, "forbidden_origin", REFUSAL)
    if PROTOCOL not in websocket.scope.get("subprotocols", ()):
        message = f"Open the WebSocket with the {PROTOCOL} subprotocol."
        raise _Refusal(400, "bad_request", message)
    token = session_token(websocket)  # type: ignore[arg-type]  # reads cookies alone
    try:
        session = await resources.store.authenticate(token) if token else None
        listening = session is not None and await hub.listening(
            within=resources.settings.storage_connect_timeout
        )
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("refused a WebSocket: %s", describe_outage(exc))
        raise _Refusal(503, "unavailable", "Storage is unavailable; try again.") from None
    if session is None:
        message = "Sign in first: no active session for this psession cookie."
        raise _Refusal(401, "unauthenticated", message)
    if not listening:
        raise _Refusal(503, "unavailable", "Live updates are unavailable.")
    try:
        connection = hub.connect(user_id=session.user_id, session_id=session.id)
    except TooMany as exc:
        log.warning("refused a WebSocket of user %s: %s", session.user_id, exc)
        raise _Refusal(429, "too_many_connections", str(exc)) from None
    connection.token = token
    # An end heard before the connection was registered closed nothing: look once more.
    if not await _still_active(resources, connection):
        hub.disconnect(connection)
        raise _Refusal(401, "unauthenticated", "Sign in first: the session has ended.")
    # Closed when the session expires, if nothing ended it before.
    connection.expires_in(max(0.0, (session.expires_at - utcnow()).total_seconds()))
    return connection


async def _refuse(websocket: WebSocket, refusal: _Refusal) -> None:
    answer = error_response(websocket.scope, refusal.status, refusal.code, refusal.message)
    try:
        await websocket.send_denial_response(answer)
    except RuntimeError:  # a server without the denial extension: a bare 403
        await websocket.close()


async def _serve(websocket: WebSocket, resources: Resources, connection: Connection) -> None:
    """Runs the protocol until the client leaves or the connection must close."""
    handler = BaseGraphQLTransportWSHandler(
        view=_View(),  # type: ignore[arg-type]  # the handler only calls on_ws_connect
        websocket=_Socket(websocket),
        context=LiveContext(connection),
        root_value=None,
        schema=_SubscriptionsOnly(),  # type: ignore[arg-type]  # the handler only calls stream
        connection_init_wait_timeout=INIT_TIMEOUT,
        max_subscriptions_per_connection=resources.settings.subscriptions_per_user,
    )
    protocol = asyncio.create_task(handler.handle())
    recheck = asyncio.create_task(_recheck(resources, connection))
    try:
        waits: set[asyncio.Future[Any]] = {protocol, connection.closing}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        recheck.cancel()
        if not protocol.done():
            protocol.cancel()
        await asyncio.gather(protocol, recheck, return_exceptions=True)
    if connection.closing.done() and websocket.application_state == WebSocketState.CONNECTED:
        why = connection.closing.result()
        log.info("closing a WebSocket of user %s: %s", connection.user_id, why.reason)
        with suppress(Exception):
            await asyncio.wait_for(websocket.close(why.code, why.reason), CLOSE_WAIT)


async def _recheck(resources: Resources, connection: Connection) -> None:
    while True:
        await asyncio.sleep(RECHECK_INTERVAL)
        if not await _still_active(resources, connection):
            connection.close(SESSION_ENDED)
            return


async def _still_active(resources: Resources, connection: Connection) -> bool:
    """Whether the connection's session is still active (an open page is not activity: it
    records none); True when storage does not answer, for no answer is not an end."""
    try:
        return await resources.store.is_active(connection.token or "")
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        return True


class _View:
    async def on_ws_connect(self, context: LiveContext) -> UnsetType:
        return UnsetType()  # no payload: signed in at the handshake already


class _SubscriptionsOnly:
    """The schema as the handler sees it: subscriptions only."""

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any = None,
        root_value: Any = None,
        operation_name: str | None = None,
    ) -> Any:
        return await schema.stream(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )


class _Socket(AsyncWebSocketAdapter):
    """Starlette's WebSocket as Strawberry's handler uses it: JSON text messages."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                try:
                    yield json.loads(text)
                except ValueError as exc:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from exc
        except KeyError as exc:  # a binary message
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            pass

    async def send_json(self, message: Mapping[str, object]) -> None:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        try:
            await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError) as exc:  # gone, or closed by us already
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, reason=reason)

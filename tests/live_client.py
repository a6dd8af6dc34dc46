"""A graphql-transport-ws client for the tests, on the `websockets` library: it opens the
WebSocket at /graphql with a psession cookie, subscribes, and reads what the server sends."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"

SESSION_EVENTS = """subscription {
  sessionEvents {
    type occurredAt
    session { id tokenSuffix clientIp isCurrent isNewLocation geo { countryCode } }
    endedSession { id endedAt endReason }
  }
}"""


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql"


class Live:
    """One connection: `subscribe`, then `next_event`, or `closed` to see how it ended."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = 0

    async def subscribe(self, query: str = SESSION_EVENTS) -> str:
        self._ids += 1
        op = str(self._ids)
        await self.send({"id": op, "type": "subscribe", "payload": {"query": query}})
        return op

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def message(self, within: float) -> dict[str, Any]:
        """The next protocol message (answering the server's pings on the way)."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), within)
            message: dict[str, Any] = json.loads(raw)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def next_event(self, within: float) -> dict[str, Any]:
        """The data of the next `next` message."""
        message = await self.message(within)
        assert message["type"] == "next", message
        event: dict[str, Any] = message["payload"]["data"]["sessionEvents"]
        return event

    async def closed(self, within: float) -> tuple[int | None, str | None]:
        """Reads (and drops) messages until the server closes; its close code and reason."""
        deadline = time.monotonic() + within
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            received = closed.rcvd
            return (received.code, received.reason) if received else (None, None)


@asynccontextmanager
async def live(
    base_url: str, token: str | None, *, origin: str | None = None, **options: Any
) -> AsyncIterator[Live]:
    """A connection, initialised (connection_ack received)."""
    headers = {}
    if token is not None:
        headers["Cookie"] = f"psession={token}"
    if origin is not None:
        headers["Origin"] = origin
    async with connect(
        ws_url(base_url),
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=10,
        **options,
    ) as ws:
        client = Live(ws)
        await client.send({"type": "connection_init"})
        ack = await client.message(within=10)
        assert ack["type"] == "connection_ack", ack
        yield client


_GAUGE = re.compile(r"^sessions_api_live_subscriptions(?:\{[^}]*\})? (\S+)$", re.M)


async def wait_subscribed(base_url: str, count: int, within: float = 10.0) -> None:
    """Waits until the server says it has `count` subscriptions open (its /metrics): the events
    from then on are theirs."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        while True:
            text = (await http.get("/metrics")).text
            found = sum(float(v) for v in _GAUGE.findall(text))
            if found == count:
                return
            assert time.monotonic() < deadline, f"{found} subscriptions open, not {count}"
            await asyncio.sleep(0.05)

"""`sessionEvents`: the signed-in user's session events as they happen, for one subscription of
a WebSocket connection (sessions_http/live.py signed it in)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from resolvers.errors import TooManySubscriptions
from sessions_events.live import Connection, TooMany
from sessions_events.payload import Enriched


def session_events(connection: Connection) -> AsyncIterator[Enriched]:
    """The events of the connection's user from now on; TooManySubscriptions over a limit.
    Never another user's: the connection's user is the one its cookie signed in."""
    try:
        subscription = connection.subscribe()
    except TooMany as exc:
        raise TooManySubscriptions(str(exc)) from None
    return subscription.events()

"""Live session events for the WebSocket subscriptions of this process (sessions_http/live.py).

Every process hears every event as it commits (store/notifications.py: Postgres LISTEN), reads
and locates those of users it has subscribers for, and hands each to their subscriptions. It
also closes the connections whose own session has ended.

Bounds: connections and subscriptions per user and per process (SUBSCRIPTIONS_PER_USER,
SUBSCRIPTIONS_PER_PROCESS), and events waiting per subscription (SUBSCRIPTION_QUEUE): a
subscriber that lets more pile up is dropped, its connection closed, rather than buffered
without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import NamedTuple

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

from sessions_config.settings import Settings
from sessions_events.payload import Enriched, enrich
from sessions_geo.lookup import GeoLookup
from store.notifications import Announced, listen_forever
from store.sessions import SessionStore

log = logging.getLogger(__name__)

SUBSCRIPTIONS = Gauge(
    "sessions_api_live_subscriptions",
    "sessionEvents subscriptions open (summed over the workers of `serve --workers N`).",
    multiprocess_mode="livesum",
)
LIVE_EVENTS = MetricCounter(
    "sessions_api_live_events_total",
    "Session events handed to this process's subscriptions, by outcome: sent (queued for a "
    "subscriber), dropped (the subscriber was too slow and was disconnected) or unread (storage "
    "failed while reading or locating it).",
    ["outcome"],
)

# Events read (and located) in one go.
READ_BATCH = 500
# Announcements remembered, so that one heard twice (again while catching up after the
# listening connection dropped) is delivered once.
REMEMBERED = 10_000
# After the listening connection comes back, what was said while it was away is read: pages of
# CATCH_UP events, at most CATCH_UP_PAGES of them (beyond that, every connection is closed with
# MISSED, and its client reloads), starting CATCH_UP_MARGIN events before the newest heard (an
# event numbered before it may commit after it; those heard already are not sent twice).
CATCH_UP = 1000
CATCH_UP_PAGES = 10
CATCH_UP_MARGIN = 1000


class Closing(NamedTuple):
    """A WebSocket close code and reason (README, "Live updates")."""

    code: int
    reason: str


SESSION_ENDED = Closing(4401, "Session ended")
TOO_SLOW = Closing(1013, "Too slow: events were waiting unread; reconnect and reload")
MISSED = Closing(1013, "Events were missed; reconnect and reload")
# What uvicorn itself sends to open WebSockets when it shuts down.
RESTARTING = Closing(1012, "Service restart")


class TooMany(Exception):
    """A limit on connections or subscriptions was reached."""


class Connection:
    """One WebSocket connection, signed in as one session of one user."""

    def __init__(self, hub: LiveEvents, *, user_id: str, session_id: str) -> None:
        self.hub = hub
        self.user_id = user_id
        self.session_id = session_id
        # The psession cookie it signed in with, to check now and then that it still may.
        # Never logged.
        self.token: str | None = None
        # Set once the connection must close, with why.
        self.closing: asyncio.Future[Closing] = asyncio.get_running_loop().create_future()
        self.subscriptions: set[Subscription] = set()
        self._expiry: asyncio.TimerHandle | None = None

    def close(self, why: Closing) -> None:
        if not self.closing.done():
            self.closing.set_result(why)

    def expires_in(self, seconds: float) -> None:
        """Closes it (SESSION_ENDED) in this many seconds, when its session expires."""
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(seconds, self.close, SESSION_ENDED)

    def forget(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def subscribe(self) -> Subscription:
        """A subscription to its user's events; TooMany over a limit."""
        return self.hub.subscribe(self)


class Subscription:
    """The events one `sessionEvents` subscription has waiting (at most SUBSCRIPTION_QUEUE)."""

    def __init__(self, connection: Connection, size: int) -> None:
        self.connection = connection
        self.waiting: asyncio.Queue[Enriched] = asyncio.Queue(maxsize=size)

    def offer(self, event: Enriched) -> None:
        try:
            self.waiting.put_nowait(event)
        except asyncio.QueueFull:
            LIVE_EVENTS.labels("dropped").inc()
            log.warning(
                "live updates: dropped a subscriber of user %s: %d events waiting unread",
                self.connection.user_id,
                self.waiting.qsize(),
            )
            self.connection.close(TOO_SLOW)
        else:
            LIVE_EVENTS.labels("sent").inc()

    async def events(self) -> AsyncIterator[Enriched]:
        try:
            while True:
                yield await self.waiting.get()
        finally:
            self.connection.hub.unsubscribe(self)


class LiveEvents:
    """The subscriptions of this process, and the listening that feeds them (started with the
    first connection)."""

    def __init__(
        self, store: SessionStore, geo: GeoLookup, settings: Settings, *, listen_url: str
    ) -> None:
        self.store = store
        self.geo = geo
        self.listen_url = listen_url
        self.connect_timeout = settings.storage_connect_timeout
        self.per_user = settings.subscriptions_per_user
        self.per_process = settings.subscriptions_per_process
        self.queue_size = settings.subscription_queue
        self._connections: set[Connection] = set()
        self._connections_of: Counter[str] = Counter()
        self._by_session: dict[str, set[Connection]] = {}
        self._subscriptions_of: dict[str, set[Subscription]] = {}
        self._subscription_count = 0
        self._listening = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._heard_before = False
        self._last_seq: int | None = None
        # The newest event when this process began listening: nothing before it is its to send.
        self._floor = 0
        self._remembered: set[int] = set()
        self._remembered_order: deque[int] = deque()
        self._unread: list[int] = []
        self._reader: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None

    # -- connections and subscriptions ---------------------------------------------------------

    def connect(self, *, user_id: str, session_id: str) -> Connection:
        """A new connection of this session; TooMany over a limit."""
        if len(self._connections) >= self.per_process:
            raise TooMany("This server has as many live connections as it takes.")
        if self._connections_of[user_id] >= self.per_user:
            raise TooMany(f"At most {self.per_user} live connections per user.")
        self._start_listening()
        connection = Connection(self, user_id=user_id, session_id=session_id)
        self._connections.add(connection)
        self._connections_of[user_id] += 1
        self._by_session.setdefault(session_id, set()).add(connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        connection.forget()
        self._connections_of[connection.user_id] -= 1
        if self._connections_of[connection.user_id] <= 0:
            del self._connections_of[connection.user_id]
        same = self._by_session.get(connection.session_id)
        if same is not None:
            same.discard(connection)
            if not same:
                del self._by_session[connection.session_id]
        for subscription in list(connection.subscriptions):
            self.unsubscribe(subscription)

    def subscribe(self, connection: Connection) -> Subscription:
        user_id = connection.user_id
        if connection not in self._connections:
            raise TooMany("The connection is closing.")
        if self._subscription_count >= self.per_process:
            raise TooMany("This server has as many subscriptions as it takes.")
        mine = self._subscriptions_of.setdefault(user_id, set())
        if len(mine) >= self.per_user:
            raise TooMany(f"At most {self.per_user} subscriptions per user.")
        subscription = Subscription(connection, self.queue_size)
        mine.add(subscription)
        connection.subscriptions.add(subscription)
        self._subscription_count += 1
        SUBSCRIPTIONS.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        connection = subscription.connection
        mine = self._subscriptions_of.get(connection.user_id)
        if mine is None or subscription not in mine:
            return
        mine.discard(subscription)
        if not mine:
            del self._subscriptions_of[connection.user_id]
        connection.subscriptions.discard(subscription)
        self._subscription_count -= 1
        SUBSCRIPTIONS.dec()

    async def listening(self, *, within: float) -> bool:
        """Whether events are being heard, waiting up to `within` seconds for it."""
        self._start_listening()
        try:
            await asyncio.wait_for(self._listening.wait(), within)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Closes every connection (RESTARTING) and stops listening."""
        for connection in list(self._connections):
            connection.close(RESTARTING)
        for task in (self._listener, self._reader, self._catching_up):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # -- hearing events --------------------------------------------------------------------------

    def _start_listening(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(
                listen_forever(
                    self.listen_url,
                    connect_timeout=self.connect_timeout,
                    on_event=self._heard,
                    on_listening=self._on_listening,
                )
            )

    def _on_listening(self, listening: bool) -> None:
        if not listening:
            # New subscribers are refused (503) until it listens again.
            self._listening.clear()
            return
        self._listening.set()
        if self._heard_before:
            # What was announced while the connection was away was not heard: read it.
            self._catching_up = asyncio.create_task(self._catch_up(self._last_seq))
        else:
            # Where that would start, if it is ever needed.
            self._catching_up = asyncio.create_task(self._note_last_seq())
        self._heard_before = True

    async def _note_last_seq(self) -> None:
        try:
            last = await self.store.last_event_seq()
        except Exception as exc:
            log.warning("live updates: could not read the newest event's number: %s", exc)
            return
        self._floor = last
        if self._last_seq is None or last > self._last_seq:
            self._last_seq = last

    async def _catch_up(self, after: int | None) -> None:
        if after is None:
            log.warning("live updates: events said while not listening may be missed")
            return
        start = max(self._floor, after - CATCH_UP_MARGIN)
        try:
            for _ in range(CATCH_UP_PAGES):
                missed = await self.store.events_after(start, limit=CATCH_UP)
                for event in missed:
                    self._heard(Announced(event.seq, event.type, event.session_id, event.user_id))
                if len(missed) < CATCH_UP:
                    return
                start = missed[-1].seq
        except Exception as exc:  # a storage failure: logged, and taken as below
            log.warning("live updates: could not catch up after seq %d: %s", start, exc)
        # Too much was missed, or it could not be read: every client starts afresh.
        log.warning("live updates: events missed; closing %d connections", len(self._connections))
        for connection in list(self._connections):
            connection.close(MISSED)

    def _heard(self, announced: Announced) -> None:
        if not self._remember(announced.seq):
            return
        if self._last_seq is None or announced.seq > self._last_seq:
            self._last_seq = announced.seq
        if announced.type != "session.created":
            for connection in list(self._by_session.get(announced.session_id, ())):
                if connection.user_id == announced.user_id:
                    connection.close(SESSION_ENDED)
        if announced.user_id in self._subscriptions_of:
            self._unread.append(announced.seq)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_unread())

    def _remember(self, seq: int) -> bool:
        """False if this event was heard already."""
        if seq in self._remembered:
            return False
        self._remembered.add(seq)
        self._remembered_order.append(seq)
        if len(self._remembered_order) > REMEMBERED:
            self._remembered.discard(self._remembered_order.popleft())
        return True

    async def _read_unread(self) -> None:
        while self._unread:
            seqs, self._unread = self._unread[:READ_BATCH], self._unread[READ_BATCH:]
            try:
                events = await self.store.events_numbered(seqs)
                located = await enrich(self.store, self.geo, events)
            except Exception as exc:
                LIVE_EVENTS.labels("unread").inc(len(seqs))
                log.warning("live updates: %d events not delivered: %s", len(seqs), exc)
                continue
            for event in located:
                for subscription in list(self._subscriptions_of.get(event.event.user_id, ())):
                    subscription.offer(event)

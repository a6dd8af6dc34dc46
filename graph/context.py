"""The per-request context every resolver receives (typed, so resolvers know what they get). It
is the request scope resolvers/scope.py describes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import strawberry
from prometheus_client import Counter

from graph.fairness import IN_FLIGHT
from loaders.geo_by_ip import GeoByIpLoader
from resolvers.errors import RateLimited
from sessions_config.resources import Resources
from sessions_events.live import Connection
from store.models import Actor, SessionRecord, utcnow
from store.sessions import SessionStore

T = TypeVar("T")

# Postgres queries one request may have running at once. A document can ask for up to 40
# different history pages; without a cap, one user's few requests could hold every pooled
# connection (PG_POOL_SIZE) while everyone else waits.
POSTGRES_READS_PER_REQUEST = 2

AUTHENTICATIONS = Counter(
    "sessions_api_authentications_total",
    "psession cookies checked, by outcome: accepted, or rejected (unknown, ended, expired or "
    "malformed). A jump in rejected ones can be someone guessing tokens.",
    ["outcome"],
)


@dataclass
class Context:
    store: SessionStore
    geo: GeoByIpLoader
    now: datetime
    # The raw psession cookie. Never logged or stored; only its hash leaves this object.
    token: str | None = field(repr=False)
    # The operationName the request gave, if any (Strawberry keeps its own copy private).
    operation_name: str | None = None
    # Who a revocation is recorded as in the audit trail (the user, with the request's id and
    # address), made when first asked for: most requests change nothing.
    actor_of: Callable[[], Actor] | None = field(default=None, repr=False)
    _actor: Actor | None = field(default=None, repr=False)
    # Requests of one user that may run at once, and what a refused one is told (settings).
    max_in_flight: int = 4
    retry_after: int = 1
    # When the request began (time.monotonic()), to say in the log how long an outage held it.
    started: float = field(default_factory=time.monotonic)
    _shared: dict[Hashable, asyncio.Task[Any]] = field(default_factory=dict, repr=False)
    _inline: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict, repr=False)
    _postgres_reads: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(POSTGRES_READS_PER_REQUEST), repr=False
    )
    _admitted: str | None = field(default=None, repr=False)
    # The cookie's user's sessions, read from Redis with the cookie (store.sign_in).
    _listed: tuple[str, Sequence[SessionRecord]] | None = field(default=None, repr=False)

    @classmethod
    def for_request(
        cls,
        resources: Resources,
        *,
        token: str | None,
        operation_name: str | None = None,
        actor_of: Callable[[], Actor] | None = None,
    ) -> Context:
        # A new loader per request: a shared one would cache across users.
        return cls(
            store=resources.store,
            geo=GeoByIpLoader(resources.geo),
            now=utcnow(),
            token=token,
            operation_name=operation_name,
            actor_of=actor_of,
            max_in_flight=resources.settings.user_max_concurrent_requests,
            retry_after=resources.settings.rate_limit_retry_after,
        )

    def once(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> Awaitable[T]:
        """The result of `start()`, run once per request for each key: 40 aliases of one list
        field with the same arguments make one trip to storage. `start` is called at once (so
        whatever it does before its first await, it does now) and its coroutine runs as a task
        of its own, which a waiter being cancelled does not cancel (close() does)."""
        task = self._shared.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            task.add_done_callback(_retrieve)
            self._shared[key] = task
        return asyncio.shield(task)

    async def shared(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """As `once`, for work asked for from within what `once` runs (the storage reads that
        several list fields share): the first caller runs `start()` itself, saving a task, and
        later callers wait for its result. That caller is a task of `once`'s, which only
        close() cancels, so a waiter being cancelled never cancels the work."""
        known = self._inline.get(key)
        if known is not None:
            return await asyncio.shield(known)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        result.add_done_callback(_retrieve)
        self._inline[key] = result
        try:
            value = await start()
        except asyncio.CancelledError:
            result.cancel()
            raise
        except BaseException as exc:
            result.set_exception(exc)
            raise
        result.set_result(value)
        return value

    async def postgres_read(self, read: Callable[[], Awaitable[T]]) -> T:
        """Runs a Postgres read within this request's share (POSTGRES_READS_PER_REQUEST)."""
        async with self._postgres_reads:
            return await read()

    async def cookie_session(self) -> SessionRecord | None:
        """The active session of the cookie (None if there is none), looked up once per request;
        RateLimited when its user already has as many requests in flight as they may."""
        return await self.once("cookie_session", self._authenticate)

    async def _authenticate(self) -> SessionRecord | None:
        if not self.token:
            return None
        found = await self.store.sign_in(self.token, now=self.now)
        AUTHENTICATIONS.labels("rejected" if found is None else "accepted").inc()
        if found is None:
            return None
        user_id = found.session.user_id
        self._listed = (user_id, found.listed)
        if not IN_FLIGHT.enter(user_id, limit=self.max_in_flight):
            raise RateLimited(self.retry_after)
        self._admitted = user_id
        return found.session

    @property
    def actor(self) -> Actor | None:
        """Who the request's changes are recorded as; None if the request did not say."""
        if self._actor is None and self.actor_of is not None:
            self._actor = self.actor_of()
        return self._actor

    def listed_with_cookie(self, user_id: str) -> Sequence[SessionRecord] | None:
        """The user's sessions as read with the cookie, if the cookie is theirs."""
        if self._listed is None or self._listed[0] != user_id:
            return None
        return self._listed[1]

    def close(self) -> None:
        """Ends the request's work: gives back its user's slot, and cancels shared lookups no
        one waits for any more (a client that went away leaves nothing running)."""
        for task in self._shared.values():
            task.cancel()
        self._shared.clear()
        for future in self._inline.values():
            future.cancel()
        self._inline.clear()
        if self._admitted is not None:
            IN_FLIGHT.leave(self._admitted)
            self._admitted = None


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled: mark the exception as seen, or asyncio logs it as
    # "never retrieved". The waiters that are left still get it.
    if not task.cancelled():
        task.exception()


Info: TypeAlias = strawberry.Info[Context, None]


@dataclass
class LiveContext:
    """The context of the operations of one WebSocket connection (sessions_http/live.py): the
    session it signed in as, for as long as it lasts."""

    connection: Connection
    # What the client sent with connection_init (Strawberry sets it; nothing reads it).
    connection_params: Any = None


LiveInfo: TypeAlias = strawberry.Info[LiveContext, None]

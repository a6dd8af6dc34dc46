"""What resolvers use of the request they serve. graph/context.py's Context is the one
implementation; resolvers name this protocol instead, so that they need nothing of GraphQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from loaders.geo_by_ip import GeoByIpLoader
from store.models import Actor, SessionRecord
from store.sessions import SessionStore

T = TypeVar("T")


class RequestScope(Protocol):
    @property
    def store(self) -> SessionStore: ...

    @property
    def geo(self) -> GeoByIpLoader:
        """The request's own loader: every list of one query shares its lookup round."""
        ...

    @property
    def actor(self) -> Actor | None:
        """Who the request's changes are recorded as (the audit trail)."""
        ...

    @property
    def now(self) -> datetime:
        """The request's one "now", so that every field judges expiry alike."""
        ...

    def once(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> Awaitable[T]:
        """The result of `start()`, run once per request for each key."""
        ...

    def shared(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> Awaitable[T]:
        """As `once`, for work asked for from within what `once` runs: the first caller runs it
        itself rather than in a task of its own."""
        ...

    async def postgres_read(self, read: Callable[[], Awaitable[T]]) -> T:
        """Runs a Postgres read within the request's share of the pool."""
        ...

    async def cookie_session(self) -> SessionRecord | None:
        """The active session of the request's cookie, or None."""
        ...

    def listed_with_cookie(self, user_id: str) -> Sequence[SessionRecord] | None:
        """The user's sessions as Redis held them when the cookie was checked (one read does
        both), if the cookie is this user's; else None."""
        ...

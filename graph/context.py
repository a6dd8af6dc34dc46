"""The per-request context every resolver receives (typed, so resolvers know what they get)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import strawberry

from graph.metrics import AUTHENTICATIONS
from graph.resources import Resources
from loaders.geo_by_ip import GeoByIpLoader
from store.models import SessionRecord, utcnow
from store.sessions import SessionStore

_UNKNOWN = object()


@dataclass
class Context:
    store: SessionStore
    geo: GeoByIpLoader
    now: datetime
    # The raw psession cookie. Never logged or stored; only its hash leaves this object.
    token: str | None = field(repr=False)
    # The operationName the request gave, if any (Strawberry keeps its own copy private).
    operation_name: str | None = None
    _session: object = field(default=_UNKNOWN, repr=False)

    @classmethod
    def for_request(
        cls, resources: Resources, *, token: str | None, operation_name: str | None = None
    ) -> Context:
        # A new loader per request: a shared one would cache across users.
        return cls(
            store=resources.store,
            geo=GeoByIpLoader(resources.geo),
            now=utcnow(),
            token=token,
            operation_name=operation_name,
        )

    async def current_session(self) -> SessionRecord | None:
        """The active session of the cookie, looked up once per request."""
        if self._session is _UNKNOWN:
            session = None
            if self.token:
                session = await self.store.authenticate(self.token, now=self.now)
                AUTHENTICATIONS.labels("rejected" if session is None else "accepted").inc()
            self._session = session
        return self._session  # type: ignore[return-value]


Info: TypeAlias = strawberry.Info[Context, None]

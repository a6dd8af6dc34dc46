"""A user's active sessions (from Redis), newest first, with what the query asks of them:
geolocation and the location signals (which need the user's session timeline from Postgres).

Resolved once per request for each selection: 40 aliases of `sessions` make one listing in
Redis (and one timeline query), however they are spelt. With Postgres down, the sessions still
show; only their signals are unavailable (see `ActiveSessionList.signals_unavailable`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from loaders.geo_by_ip import Locations, Reservation
from resolvers.geo import with_geo
from resolvers.scope import RequestScope
from sessions_rules.signals import Located, Signals, signals_for
from store.errors import StorageUnavailable, describe_outage, outage_of
from store.models import SessionRecord, TimelineEntry

# The location signals compare a session with the user's most recent sessions, at most this many.
TIMELINE_LIMIT = 1000


@dataclass
class ActiveSessionList:
    records: list[SessionRecord]
    geo: Locations = field(default_factory=dict)
    # By session id, when the query asks for them.
    signals: dict[str, Signals] = field(default_factory=dict)
    # Set when the query asks for signals but the timeline could not be read (a storage outage).
    signals_unavailable: StorageUnavailable | None = None


async def active_sessions(
    scope: RequestScope, *, user_id: str, want_geo: bool, want_signals: bool
) -> ActiveSessionList:
    return await scope.once(
        ("sessions", user_id, want_geo, want_signals),
        # The geo reservation is taken now, before this resolver's first await.
        lambda: _load(
            scope,
            scope.geo.reserve(),
            user_id=user_id,
            want_geo=want_geo,
            want_signals=want_signals,
        ),
    )


@dataclass
class _Fetched:
    records: list[SessionRecord]
    timeline: list[TimelineEntry]
    timeline_unavailable: StorageUnavailable | None = None


async def _load(
    scope: RequestScope,
    reservation: Reservation,
    *,
    user_id: str,
    want_geo: bool,
    want_signals: bool,
) -> ActiveSessionList:
    def ips_of(fetched: _Fetched) -> list[str]:
        ips = [r.client_ip for r in fetched.records] if want_geo or want_signals else []
        return ips + [entry.client_ip for entry in fetched.timeline]

    fetched, located = await with_geo(
        reservation, lambda: _fetch(scope, user_id, want_signals), ips_of
    )
    found = ActiveSessionList(
        fetched.records, located, signals_unavailable=fetched.timeline_unavailable
    )
    if want_signals and fetched.timeline_unavailable is None:
        found.signals = signals_for(
            [Located(r.id, r.created_at, located.get(r.client_ip)) for r in fetched.records],
            [Located(e.id, e.created_at, located.get(e.client_ip)) for e in fetched.timeline],
        )
    return found


async def _fetch(scope: RequestScope, user_id: str, want_timeline: bool) -> _Fetched:
    """The active sessions and, when asked for, the timeline, read at the same time."""
    listing = scope.shared(
        ("active", user_id),
        lambda: scope.store.list_active_for_user(
            user_id=user_id, now=scope.now, listed=scope.listed_with_cookie(user_id)
        ),
    )
    if not want_timeline:
        return _Fetched(await listing, [])
    reading = scope.shared(
        ("timeline", user_id),
        lambda: scope.postgres_read(
            lambda: scope.store.timeline_for_user(user_id=user_id, limit=TIMELINE_LIMIT)
        ),
    )
    records, timeline = await asyncio.gather(listing, reading, return_exceptions=True)
    if isinstance(records, BaseException):
        raise records
    if isinstance(timeline, BaseException):
        # Postgres down: the sessions (from Redis) still show, without their signals.
        dependency = outage_of(timeline)
        if dependency is None:
            raise timeline
        return _Fetched(records, [], StorageUnavailable(dependency, describe_outage(timeline)))
    return _Fetched(records, timeline)

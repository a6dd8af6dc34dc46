"""A user's active sessions (from Redis), newest first, with what the query asks of them:
geolocation and the location signals (which need the user's session timeline from Postgres).

Resolved once per request for each selection: 40 aliases of `sessions` make one listing in
Redis (and one timeline query), however they are spelt. With Postgres down, the sessions still
show; only their signals are unavailable (see `ActiveSessions.signals_unavailable`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from graph.context import Context, Info
from loaders.geo_by_ip import GeoByIp, Reservation
from resolvers.geo import selects, with_geo
from sessions_rules.signals import Located, signals_for
from store.errors import StorageUnavailable, describe_outage, outage_of
from store.models import SessionRecord

# The location signals compare a session with the user's most recent sessions, at most this many.
TIMELINE_LIMIT = 1000

Timeline = list[tuple[str, datetime, str]]


@dataclass
class ActiveSessions:
    records: list[SessionRecord]
    geo: GeoByIp = field(default_factory=dict)
    # session id -> (is_new_location, impossible_travel), when the query asks for them
    signals: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    # Set when the query asks for signals but the timeline could not be read (a storage outage).
    signals_unavailable: StorageUnavailable | None = None


async def active_sessions(info: Info, *, user_id: str) -> ActiveSessions:
    ctx = info.context
    want_geo = selects(info, "geo")
    want_signals = selects(info, "isNewLocation", "impossibleTravel")
    return await ctx.once(
        ("sessions", user_id, want_geo, want_signals),
        # The geo reservation is taken now, before this resolver's first await.
        lambda: _load(
            ctx,
            ctx.geo.reserve(),
            user_id=user_id,
            want_geo=want_geo,
            want_signals=want_signals,
        ),
    )


async def _load(
    ctx: Context, reservation: Reservation, *, user_id: str, want_geo: bool, want_signals: bool
) -> ActiveSessions:
    timeline: Timeline = []
    unavailable: StorageUnavailable | None = None

    async def fetch() -> list[SessionRecord]:
        nonlocal timeline, unavailable
        listing = ctx.once(
            ("active", user_id),
            lambda: ctx.store.list_active_for_user(user_id=user_id, now=ctx.now),
        )
        if not want_signals:
            return await listing
        reading = ctx.once(
            ("timeline", user_id),
            lambda: ctx.postgres_read(
                lambda: ctx.store.timeline_for_user(user_id=user_id, limit=TIMELINE_LIMIT)
            ),
        )
        records, found = await asyncio.gather(listing, reading, return_exceptions=True)
        if isinstance(records, BaseException):
            raise records
        if isinstance(found, BaseException):
            # Postgres down: the sessions (from Redis) still show, without their signals.
            dependency = outage_of(found)
            if dependency is None:
                raise found
            unavailable = StorageUnavailable(dependency, describe_outage(found))
        else:
            timeline = found
        return records

    def ips_of(records: list[SessionRecord]) -> list[str]:
        ips = [r.client_ip for r in records] if want_geo or want_signals else []
        return ips + [ip for _, _, ip in timeline]

    records, located = await with_geo(reservation, fetch, ips_of)
    view = ActiveSessions(records, located, signals_unavailable=unavailable)
    if want_signals and unavailable is None:
        view.signals = signals_for(
            [Located(r.id, r.created_at, located.get(r.client_ip)) for r in records],
            [Located(i, created, located.get(ip)) for i, created, ip in timeline],
        )
    return view

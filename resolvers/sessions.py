"""A user's active sessions (from Redis), newest first, with what the query asks of them:
geolocation and the location signals (which need the user's session timeline from Postgres)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from graph.context import Info
from loaders.geo_by_ip import GeoByIp
from resolvers.geo import selects, with_geo
from resolvers.signals import Located, signals_for
from store.models import SessionRecord

# The location signals compare a session with the user's most recent sessions, at most this many.
TIMELINE_LIMIT = 1000


@dataclass
class ActiveSessions:
    records: list[SessionRecord]
    geo: GeoByIp = field(default_factory=dict)
    # session id -> (is_new_location, impossible_travel), when the query asks for them
    signals: dict[str, tuple[bool, bool]] = field(default_factory=dict)


async def active_sessions(info: Info, *, user_id: str) -> ActiveSessions:
    ctx = info.context
    want_geo = selects(info, "geo")
    want_signals = selects(info, "isNewLocation", "impossibleTravel")
    timeline: list[tuple[str, datetime, str]] = []

    async def fetch() -> list[SessionRecord]:
        nonlocal timeline
        if not want_signals:
            return await ctx.store.list_active_for_user(user_id=user_id, now=ctx.now)
        records, timeline = await asyncio.gather(
            ctx.store.list_active_for_user(user_id=user_id, now=ctx.now),
            ctx.store.timeline_for_user(user_id=user_id, limit=TIMELINE_LIMIT),
        )
        return records

    def ips_of(records: list[SessionRecord]) -> list[str]:
        ips = [r.client_ip for r in records] if want_geo or want_signals else []
        return ips + [ip for _, _, ip in timeline]

    records, located = await with_geo(info, fetch, ips_of)
    view = ActiveSessions(records, located)
    if want_signals:
        view.signals = signals_for(
            [Located(r.id, r.created_at, located.get(r.client_ip)) for r in records],
            [Located(i, created, located.get(ip)) for i, created, ip in timeline],
        )
    return view

"""What a webhook carries: `{"type", "timestamp", "data"}`, where data is the session's stored
fields (from the outbox, docs/DATA.md) with its device and geolocation, and for
session.created the location signals, computed as the GraphQL fields compute them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sessions_geo.lookup import GeoLookup
from sessions_rules.device import parse_device
from sessions_rules.signals import Located, signals_for
from store.models import format_timestamp, parse_timestamp
from store.records import StoredEvent, python_ip
from store.sessions import SessionStore

# As far back as the GraphQL signals look (resolvers/sessions.py).
TIMELINE_LIMIT = 1000


async def render(
    store: SessionStore, geo: GeoLookup, events: Sequence[StoredEvent]
) -> dict[int, dict[str, Any]]:
    """Each event's payload, by its number."""
    ips = [python_ip(str(e.data["client_ip"])) for e in events]
    located = dict(zip(ips, await geo.many(ips), strict=True))
    timelines: dict[str, list[Located]] = {}  # by user, read once for all their events
    payloads = {}
    for event, ip in zip(events, ips, strict=True):
        info = located[ip]
        data = dict(event.data)
        data["client_ip"] = ip
        data["device"] = asdict(parse_device(str(data.get("user_agent") or "")))
        data["geo"] = asdict(info) if info is not None else None
        if event.type == "session.created":
            if event.user_id not in timelines:
                timelines[event.user_id] = await _timeline(store, geo, event.user_id)
            session = Located(event.session_id, parse_timestamp(str(data["created_at"])), info)
            signals = signals_for([session], timelines[event.user_id])[session.id]
            data["is_new_location"] = signals.is_new_location
            data["impossible_travel"] = signals.impossible_travel
        payloads[event.seq] = {
            "type": event.type,
            "timestamp": format_timestamp(event.occurred_at),
            "data": data,
        }
    return payloads


async def _timeline(store: SessionStore, geo: GeoLookup, user_id: str) -> list[Located]:
    """The user's sessions the signals judge against, located."""
    timeline = await store.timeline_for_user(user_id=user_id, limit=TIMELINE_LIMIT)
    places = await geo.many([entry.client_ip for entry in timeline])
    return [Located(e.id, e.created_at, g) for e, g in zip(timeline, places, strict=True)]

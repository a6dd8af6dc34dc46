"""What a webhook carries: `{"type", "timestamp", "data"}`, where data is the session's stored
fields (from the outbox, docs/DATA.md) with its device and geolocation, and for
session.created the location signals, computed as the GraphQL fields compute them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sessions_geo.lookup import GeoLookup
from sessions_geo.model import GeoInfo
from sessions_rules.device import parse_device
from sessions_rules.signals import Located, Signals, signals_for
from store.models import format_timestamp, parse_timestamp
from store.records import StoredEvent, python_ip
from store.sessions import SessionStore

# As far back as the GraphQL signals look (resolvers/sessions.py).
TIMELINE_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Enriched:
    """An event with what its session's stored fields do not say: where its address is and,
    for session.created, the location signals."""

    event: StoredEvent
    client_ip: str  # as Python writes it (the outbox has Postgres's text)
    geo: GeoInfo | None
    signals: Signals | None  # session.created only


async def enrich(
    store: SessionStore, geo: GeoLookup, events: Sequence[StoredEvent]
) -> list[Enriched]:
    """The events, located (one geolocation batch), in their order. Webhooks and live updates
    (sessions_events/live.py) both start here."""
    ips = [python_ip(str(e.data["client_ip"])) for e in events]
    located = dict(zip(ips, await geo.many(ips), strict=True))
    timelines: dict[str, list[Located]] = {}  # by user, read once for all their events
    enriched = []
    for event, ip in zip(events, ips, strict=True):
        info = located[ip]
        signals = None
        if event.type == "session.created":
            if event.user_id not in timelines:
                timelines[event.user_id] = await _timeline(store, geo, event.user_id)
            created_at = parse_timestamp(str(event.data["created_at"]))
            session = Located(event.session_id, created_at, info)
            signals = signals_for([session], timelines[event.user_id])[session.id]
        enriched.append(Enriched(event, ip, info, signals))
    return enriched


async def render(
    store: SessionStore, geo: GeoLookup, events: Sequence[StoredEvent]
) -> dict[int, dict[str, Any]]:
    """Each event's payload, by its number."""
    return {e.event.seq: _payload(e) for e in await enrich(store, geo, events)}


def _payload(enriched: Enriched) -> dict[str, Any]:
    event = enriched.event
    data = dict(event.data)
    data["client_ip"] = enriched.client_ip
    data["device"] = asdict(parse_device(str(data.get("user_agent") or "")))
    data["geo"] = asdict(enriched.geo) if enriched.geo is not None else None
    if enriched.signals is not None:
        data["is_new_location"] = enriched.signals.is_new_location
        data["impossible_travel"] = enriched.signals.impossible_travel
    return {"type": event.type, "timestamp": format_timestamp(event.occurred_at), "data": data}


async def _timeline(store: SessionStore, geo: GeoLookup, user_id: str) -> list[Located]:
    """The user's sessions the signals judge against, located."""
    timeline = await store.timeline_for_user(user_id=user_id, limit=TIMELINE_LIMIT)
    places = await geo.many([entry.client_ip for entry in timeline])
    return [Located(e.id, e.created_at, g) for e, g in zip(timeline, places, strict=True)]

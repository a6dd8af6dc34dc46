"""The location signals of docs/SIGNALS.md read literally, one session at a time in O(n): the
reference that tests check sessions_rules.signals.signals_for (one sweep for many sessions)
against."""

from __future__ import annotations

from collections.abc import Sequence

from sessions_geo.model import GeoInfo
from sessions_rules.signals import (
    MAX_KMH,
    Located,
    comparable_text,
    country_of,
    order_key,
    travel_too_fast,
)


def same_place(a: GeoInfo, b: GeoInfo) -> bool:
    """Whether two locations are the same place.

    Same country code (exact) and, when both cities are known, the same city (case-insensitive);
    when at least one city is unknown, the same network `org` (case-insensitive) instead. False
    when either country is unknown, or when a city is unknown and either `org` is unknown.
    Empty or blank strings count as unknown.
    """
    country_a, country_b = country_of(a), country_of(b)
    if country_a is None or country_b is None or country_a != country_b:
        return False
    city_a, city_b = comparable_text(a.city), comparable_text(b.city)
    if city_a is not None and city_b is not None:
        return city_a == city_b
    org_a, org_b = comparable_text(a.org), comparable_text(b.org)
    return org_a is not None and org_a == org_b


def is_earlier(item: Located, session: Located) -> bool:
    return item.id != session.id and order_key(item) < order_key(session)


def previous(session: Located, timeline: Sequence[Located]) -> Located | None:
    """The timeline item with the greatest (created_at, id) strictly below the session's.

    Ids are meant to be unique; should the timeline list the same (created_at, id) twice, the
    later one in input order is used, as in `signals_for` (whose sort is stable).
    """
    best: Located | None = None
    for item in timeline:
        if is_earlier(item, session) and (best is None or order_key(item) >= order_key(best)):
            best = item
    return best


def is_new_location(session: Located, timeline: Sequence[Located]) -> bool:
    """True when no earlier session of the timeline was in the same place as this one.

    False when this session's location is unknown (no geo, or no country).
    """
    geo = session.geo
    if geo is None or country_of(geo) is None:
        return False
    return not any(
        item.geo is not None and is_earlier(item, session) and same_place(geo, item.geo)
        for item in timeline
    )


def impossible_travel(
    session: Located, timeline: Sequence[Located], max_kmh: float = MAX_KMH
) -> bool:
    """True when reaching this session from the user's previous one needed more than `max_kmh`.

    The previous session is the timeline item with the greatest (created_at, id) strictly below
    this session's (items with the same id are ignored). Only that one counts: when it has no
    coordinates, the result is False even if an older session has some. False also when this
    session has no coordinates or there is no previous session.
    """
    return travel_too_fast(previous(session, timeline), session, max_kmh)

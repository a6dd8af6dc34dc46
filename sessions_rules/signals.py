"""Location signals of a session: `isNewLocation` and `impossibleTravel` (docs/SIGNALS.md).

Pure functions, no I/O: the caller fetches the user's session timeline (the user's most recent
sessions, active or past, with their geolocation) and passes it in.

Order. Sessions are ordered by the pair `(created_at, id)`: "earlier" means a strictly smaller
pair, so sessions created in the same instant are ordered by id (as strings), and the result never
depends on the order of the input. A timeline item with the same id as the session being judged
is never compared with it, so the session may or may not be part of its own timeline.

`created_at` values must all be timezone-aware (or all naive); mixing them raises TypeError, as
comparing such datetimes does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeAlias

from sessions_geo.model import GeoInfo

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), used for the great-circle distance."""

MAX_KMH = 900.0
"""Above this speed, travel between two consecutive sessions is flagged as impossible."""


@dataclass(frozen=True, slots=True)
class Located:
    """One session of the user's timeline, with what is known of where it came from."""

    id: str
    created_at: datetime
    geo: GeoInfo | None


class Signals(NamedTuple):
    """The two signals of one session."""

    is_new_location: bool
    impossible_travel: bool


# --- same place ----------------------------------------------------------------------------------
#
# Two locations are the same place when they have the same country code (exact) and, when both
# cities are known, the same city (case-insensitive); when at least one city is unknown, the same
# network `org` (case-insensitive) instead. Never when either country is unknown, or when a city
# is unknown and either `org` is unknown. Empty or blank strings count as unknown.
# (tests/signals_reference.py spells this out one pair at a time.)


def comparable_text(value: str | None) -> str | None:
    """A comparable form of a text field, or None when unknown (None, empty or only blanks)."""
    if value is None or not value.strip():
        return None
    return value.casefold()


def country_of(geo: GeoInfo | None) -> str | None:
    """The country code, compared exactly; None when unknown (missing or empty)."""
    if geo is None or geo.country_code is None or not geo.country_code.strip():
        return None
    return geo.country_code


# --- order ---------------------------------------------------------------------------------------


def order_key(item: Located) -> tuple[datetime, str]:
    return (item.created_at, item.id)


# --- travel --------------------------------------------------------------------------------------


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def travel_too_fast(previous: Located | None, session: Located, max_kmh: float) -> bool:
    if previous is None or previous.geo is None or session.geo is None:
        return False
    a, b = previous.geo, session.geo
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return False
    distance = haversine_km(a.lat, a.lon, b.lat, b.lon)
    hours = (session.created_at - previous.created_at).total_seconds() / 3600.0
    if hours <= 0:
        # Same instant (the order guarantees hours >= 0): any move at all is impossible.
        return distance > 0
    return distance / hours > max_kmh


# --- many sessions at once -----------------------------------------------------------------------

_Ids: TypeAlias = tuple[str] | tuple[str, str]
"""Up to two distinct session ids seen for a place key: enough to know whether some session
other than a given one is there (if any id differs from X, one of the first two distinct ones
does)."""


class _PlaceIndex:
    """The places seen so far, for "is there an earlier session in the same place?" in O(1).

    "Same place" (above) is not one key equality, because the city rule applies only when both
    cities are known. For a session s of known country c it expands to:

    - s has a city:  b has a city and (c, city) equal, or b has no city and (c, org) equal
    - s has no city: (c, org) equal, whatever b's city

    (org always known on both sides when compared.) So three maps cover it exactly:
    `by_city` (c, city) of sessions with a city; `by_org_no_city` (c, org) of sessions without a
    city; `by_org` (c, org) of all sessions with an org.
    """

    __slots__ = ("by_city", "by_org", "by_org_no_city")

    def __init__(self) -> None:
        self.by_city: dict[tuple[str, str], _Ids] = {}
        self.by_org_no_city: dict[tuple[str, str], _Ids] = {}
        self.by_org: dict[tuple[str, str], _Ids] = {}

    @staticmethod
    def _put(index: dict[tuple[str, str], _Ids], key: tuple[str, str], id_: str) -> None:
        ids = index.get(key)
        if ids is None:
            index[key] = (id_,)
        elif len(ids) == 1 and ids[0] != id_:
            index[key] = (ids[0], id_)

    @staticmethod
    def _other(index: dict[tuple[str, str], _Ids], key: tuple[str, str], id_: str) -> bool:
        """Whether a session other than `id_` was put under `key`."""
        return any(other != id_ for other in index.get(key, ()))

    def add(self, item: Located) -> None:
        country = country_of(item.geo)
        if item.geo is None or country is None:
            return  # an unknown place is never the same place as anything
        city, org = comparable_text(item.geo.city), comparable_text(item.geo.org)
        if city is not None:
            self._put(self.by_city, (country, city), item.id)
        if org is not None:
            self._put(self.by_org, (country, org), item.id)
            if city is None:
                self._put(self.by_org_no_city, (country, org), item.id)

    def seen(self, session: Located) -> bool:
        """Whether some added item (other than the session itself) is in the same place."""
        country = country_of(session.geo)
        if session.geo is None or country is None:
            return False
        city, org = comparable_text(session.geo.city), comparable_text(session.geo.org)
        if city is not None:
            if self._other(self.by_city, (country, city), session.id):
                return True
            return org is not None and self._other(self.by_org_no_city, (country, org), session.id)
        return org is not None and self._other(self.by_org, (country, org), session.id)


def signals_for(
    sessions: Sequence[Located], timeline: Sequence[Located], *, max_kmh: float = MAX_KMH
) -> dict[str, Signals]:
    """The signals of each session, by id, against the timeline.

    The signal of each session as docs/SIGNALS.md defines it, in O((n + m) log(n + m)) for n
    timeline items and m sessions: the timeline and the sessions are each sorted once by
    (created_at, id), then swept together. Before judging a session, every timeline item strictly
    earlier than it has been added to a place index (`_PlaceIndex`), and the last one added is
    its previous session (skipping items with the session's own id). Ids in `sessions` are
    expected to be unique; if one repeats, the entry sorted last (greatest created_at) wins.
    """
    ordered = sorted(timeline, key=order_key)
    result: dict[str, Signals] = {}
    places = _PlaceIndex()
    added = 0
    for session in sorted(sessions, key=order_key):
        bound = order_key(session)
        while added < len(ordered) and order_key(ordered[added]) < bound:
            places.add(ordered[added])
            added += 1
        new = country_of(session.geo) is not None and not places.seen(session)
        previous_index = added - 1
        while previous_index >= 0 and ordered[previous_index].id == session.id:
            previous_index -= 1  # only when the timeline repeats the session's own id
        previous = ordered[previous_index] if previous_index >= 0 else None
        result[session.id] = Signals(new, travel_too_fast(previous, session, max_kmh))
    return result

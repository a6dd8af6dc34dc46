"""Where the IPs of a list are, through the request's GeoByIpLoader: all lists of one query share
a single batched lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from graph.context import Info
from loaders.geo_by_ip import GeoByIp
from store.models import SessionRecord


def asks_for_geo(info: Info) -> bool:
    """Whether the query selects `geo` anywhere below the field being resolved."""

    def walk(selections: Iterable[Any]) -> bool:
        for selection in selections:
            if getattr(selection, "name", None) == "geo":
                return True
            if walk(getattr(selection, "selections", ())):
                return True
        return False

    return walk(info.selected_fields)


async def with_geo(
    info: Info, fetch: Callable[[], Awaitable[list[SessionRecord]]]
) -> tuple[list[SessionRecord], GeoByIp]:
    """Fetches a list of sessions, then (if the query wants it) their geolocation, joined with
    the other lists of this query into one lookup."""
    async with info.context.geo.reserve() as reservation:
        records = await fetch()
        if not asks_for_geo(info):
            return records, {}
        return records, await reservation.submit([r.client_ip for r in records])

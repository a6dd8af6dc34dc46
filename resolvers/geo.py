"""Where the IPs of a list are, through the request's GeoByIpLoader: all lists of one query share
a single batched lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, NamedTuple, TypeVar

from loaders.geo_by_ip import Locations, Reservation

T = TypeVar("T")


class WithGeo(NamedTuple, Generic[T]):
    data: T
    geo: Locations  # where the data's IPs are


async def with_geo(
    reservation: Reservation,
    fetch: Callable[[], Awaitable[T]],
    ips_of: Callable[[T], Iterable[str]],
) -> WithGeo[T]:
    """Fetches data, then the geolocation of the IPs `ips_of` finds in it, joined with the other
    lists of this query into one lookup. No lookup if nothing asks for one (`ips_of` is empty).
    The reservation (`scope.geo.reserve()`) must be taken before the resolver's first await, so
    that the round waits for this list; it is submitted or released here."""
    # try/finally rather than `async with reservation`: two coroutines fewer per list.
    try:
        data = await fetch()
        ips = list(ips_of(data))
        if not ips:
            return WithGeo(data, {})
        return WithGeo(data, await reservation.submit(ips))
    finally:
        reservation.release()

"""The one small interface every geolocation provider implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sessions_geo.model import GeoInfo


class GeoProvider(Protocol):
    # Names the provider's entries in the cache, so switching providers never serves the
    # other one's answers.
    name: str
    # At most this many IPs per lookup() call.
    max_batch: int

    async def lookup(self, ips: Sequence[str]) -> Mapping[str, GeoInfo | None]:
        """Looks up global IP addresses (at most max_batch).

        The answer maps an IP to what is known of it, or to None when the provider answered
        that it knows nothing (cached for a short time). An IP missing from the answer was not
        looked up this time (rate limit, timeout): it is not cached, and its geo is null for now.
        Never raises for provider trouble; it logs and leaves IPs out instead.
        """
        ...

    async def aclose(self) -> None: ...

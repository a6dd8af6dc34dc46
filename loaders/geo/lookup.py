"""The geolocation pipeline behind GeoByIpLoader.

For a batch of IPs: non-global addresses are answered null without being sent anywhere; the rest
are read from the Redis cache in one MGET; only the misses go to the provider, in batches of at
most its max_batch; what the provider answered is cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence

from redis.exceptions import RedisError

from loaders.geo import metrics
from loaders.geo.model import GeoInfo
from loaders.geo.provider import GeoProvider
from store.geo_cache import GeoCache

log = logging.getLogger(__name__)


def global_ip(text: str) -> str | None:
    """The canonical form of a global (publicly routable) address, else None.

    Private, loopback, link-local, CGNAT, documentation and other reserved ranges are not global
    and are never sent to a provider. IPv4-mapped IPv6 addresses count as their IPv4 address.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address) if address.is_global else None


class GeoLookup:
    def __init__(
        self, provider: GeoProvider, cache: GeoCache, *, ttl: int, failure_ttl: int
    ) -> None:
        self.provider = provider
        self._cache = cache
        self._ttl = ttl
        self._failure_ttl = failure_ttl

    async def many(self, ips: Sequence[str]) -> list[GeoInfo | None]:
        """What is known of each IP, in order; None where nothing is (yet) known."""
        canonical = [global_ip(ip) for ip in ips]
        wanted = list(dict.fromkeys(ip for ip in canonical if ip is not None))
        known = await self._known(wanted)
        return [known.get(ip) if ip is not None else None for ip in canonical]

    async def _known(self, ips: list[str]) -> dict[str, GeoInfo | None]:
        if not ips:
            return {}
        known: dict[str, GeoInfo | None] = {}
        try:
            for ip, text in (await self._cache.get_many(ips)).items():
                known[ip] = GeoInfo.from_json(text)
        except (RedisError, ValueError) as exc:
            log.warning("geo cache read failed, asking the provider: %r", exc)
        misses = [ip for ip in ips if ip not in known]
        metrics.IPS.labels("cache").inc(len(ips) - len(misses))
        if misses:
            fetched = await self._fetch(misses)
            known.update(fetched)
            answered = sum(ip in fetched for ip in misses)
            metrics.IPS.labels("provider").inc(answered)
            metrics.IPS.labels("none").inc(len(misses) - answered)
            try:
                await self._cache.put_many(
                    {
                        ip: ("null", self._failure_ttl)
                        if geo is None
                        else (geo.to_json(), self._ttl)
                        for ip, geo in fetched.items()
                    }
                )
            except RedisError as exc:
                log.warning("geo cache write failed: %r", exc)
        return known

    async def _fetch(self, ips: list[str]) -> Mapping[str, GeoInfo | None]:
        size = self.provider.max_batch
        batches = [ips[i : i + size] for i in range(0, len(ips), size)]
        metrics.PROVIDER_BATCHES.labels(self.provider.name).inc(len(batches))
        answers = await asyncio.gather(*(self.provider.lookup(batch) for batch in batches))
        fetched: dict[str, GeoInfo | None] = {}
        for answer in answers:
            fetched.update(answer)
        return fetched

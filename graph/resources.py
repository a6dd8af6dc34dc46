"""What the app opens once, in its lifespan, and shares across requests: the asyncpg pool, the
Redis client, the geolocation provider. Also used by the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from graph.settings import Settings
from loaders.geo.ipapi import IpApiProvider
from loaders.geo.lookup import GeoLookup
from loaders.geo.offline import OfflineProvider
from loaders.geo.provider import GeoProvider
from store.geo_cache import GeoCache
from store.keys import Keys
from store.sessions import SessionStore

log = logging.getLogger(__name__)

STORAGE_TIMEOUT = 5.0  # seconds for one Postgres command or Redis reply


@dataclass(frozen=True)
class Resources:
    settings: Settings
    store: SessionStore
    geo: GeoLookup


async def make_provider(settings: Settings) -> GeoProvider:
    if settings.geo_provider == "ip-api":
        key = settings.geo_ipapi_key.get_secret_value() if settings.geo_ipapi_key else None
        return IpApiProvider(settings.geo_ipapi_url, key=key, timeout=settings.geo_timeout)
    # Loading the bundled data takes about half a second: keep the event loop free meanwhile.
    return await asyncio.to_thread(OfflineProvider, settings.geo_mmdb_path)


@asynccontextmanager
async def open_resources(settings: Settings, *, geo: bool = True) -> AsyncIterator[Resources]:
    # Bounded waits: a stuck database or cache gives a clear error, never a hung request.
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=10, command_timeout=STORAGE_TIMEOUT
    )
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=STORAGE_TIMEOUT, socket_connect_timeout=STORAGE_TIMEOUT
    )
    provider: GeoProvider | None = None
    try:
        keys = Keys(settings.redis_key_prefix)
        store = SessionStore(pool, redis, keys)
        provider = await make_provider(settings) if geo else _NoProvider()
        lookup = GeoLookup(
            provider,
            GeoCache(redis, keys, provider.name),
            ttl=settings.geo_cache_ttl,
            failure_ttl=settings.geo_failure_ttl,
            wait=settings.geo_wait,
        )
        try:
            yield Resources(settings=settings, store=store, geo=lookup)
        finally:
            await lookup.aclose()  # fetches still running in the background
    finally:
        if provider is not None:
            await provider.aclose()
        await redis.aclose()
        await pool.close()


class _NoProvider:
    """For CLI commands that never look anything up."""

    name = "none"
    max_batch = 100

    async def lookup(self, ips: object) -> dict[str, None]:
        return {}

    async def aclose(self) -> None:
        return None

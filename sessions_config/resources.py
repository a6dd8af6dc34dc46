"""What the app opens once, in its lifespan, and shares across requests: the asyncpg pool, the
Redis client, the geolocation provider. Also used by the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sessions_config import redis_sentinel
from sessions_config.redis_connection import BoundedWritesConnection
from sessions_config.settings import Settings
from sessions_geo.ipapi import IpApiProvider
from sessions_geo.lookup import GeoLookup
from sessions_geo.offline import OfflineProvider
from sessions_geo.provider import GeoProvider
from store import records
from store.client import RedisClient
from store.geo_cache import GeoCache
from store.keys import Keys
from store.replica import Replica
from store.sessions import SessionStore

log = logging.getLogger(__name__)

# A pooled Redis connection idle for longer is PINGed before it carries a command, so that a
# command is seldom the one to find it dropped (Redis restarted, or closed idle clients).
REDIS_HEALTH_CHECK_INTERVAL = 10.0


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


def redis_client(settings: Settings) -> RedisClient:
    """The Redis client REDIS_MODE asks for (see _server_client, redis_sentinel.client and
    _cluster_client)."""
    if settings.redis_mode == "cluster":
        return _cluster_client(settings)
    if settings.redis_mode == "sentinel":
        return redis_sentinel.client(settings, _server_bounds(settings))
    return _server_client(settings)


def _cluster_client(settings: Settings) -> RedisCluster:
    """A Redis Cluster's client: it learns the slots from the node REDIS_URL names (at the first
    command, not here), keeps up to REDIS_POOL_SIZE connections to each node, and follows
    MOVED and ASK redirections and a failed-over master by itself. The same bounds on connecting
    and on each reply as one server's; a command that finds its connection dropped is sent once
    more (see _server_client on why that is safe)."""
    return RedisCluster.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        socket_connect_timeout=settings.storage_connect_timeout,
        socket_timeout=settings.storage_timeout,
        health_check_interval=REDIS_HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 1),
    )


def _server_client(settings: Settings) -> Redis:
    """The Redis client, with every wait bounded (see _server_bounds)."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        **_server_bounds(settings),
        # rediss:// and unix:// URLs name their own connection class, which wins.
        connection_class=BoundedWritesConnection,
    )
    return Redis.from_pool(pool)


def _server_bounds(settings: Settings) -> dict[str, Any]:
    """The pool and connections of a client of one server (standalone, or the sentinels'
    master), with every wait bounded: for a free pooled connection (a blocking pool of
    REDIS_POOL_SIZE: a burst waits its turn instead of failing or opening connections without
    end), to connect, and for each reply.

    A command that finds its connection dropped is sent once more, at once, on a new connection.
    A timeout is never retried: a command sent to a hung Redis runs when it wakes up, and must
    not be sent twice. Every command this service sends is safe to run twice: reads, SET of the
    geo cache, and the write scripts of store/active.py (each writes the same values again, or
    nothing past its deadline): keep it so.
    """
    bounds: dict[str, Any] = {
        "max_connections": settings.redis_pool_size,
        "timeout": settings.pool_acquire_timeout,
        "socket_connect_timeout": settings.storage_connect_timeout,
        "socket_timeout": settings.storage_timeout,
        "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    return bounds


async def _postgres_pool(settings: Settings, url: str) -> Any:
    """A pool of PG_POOL_SIZE connections to `url`, every wait bounded by the settings."""
    return await records.open_pool(
        url,
        size=settings.pg_pool_size,
        connect_timeout=settings.storage_connect_timeout,
        acquire_timeout=settings.pool_acquire_timeout,
        statement_timeout=settings.storage_timeout,
    )


@asynccontextmanager
async def open_resources(settings: Settings, *, geo: bool = True) -> AsyncIterator[Resources]:
    # Nothing here connects yet: the service starts, and /readyz says what is down, while Postgres
    # or Redis is. Every later wait on them is bounded (see records.open_pool, redis_client).
    pool = await _postgres_pool(settings, settings.database_url)
    replica: Replica | None = None
    if settings.database_replica_url is not None:
        replica_pool = await _postgres_pool(settings, settings.database_replica_url)
        replica = Replica(replica_pool, max_lag=settings.database_replica_max_lag)
    redis = redis_client(settings)
    provider: GeoProvider | None = None
    try:
        keys = Keys(settings.redis_key_prefix)
        store = SessionStore(
            pool, redis, keys, replica=replica, wait_replicas=settings.wait_replicas
        )
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
        if replica is not None:
            await replica.aclose()
        await records.close_pool(pool)


class _NoProvider:
    """For CLI commands that never look anything up."""

    name = "none"
    max_batch = 100

    async def lookup(self, ips: object) -> dict[str, None]:
        return {}

    async def aclose(self) -> None:
        return None

"""Each test run gets its own Postgres database and Redis keyspace, removed at the end.

DATABASE_URL and REDIS_URL name the servers (defaults: the local ones); the run's database is
DATABASE_URL's server with a database name of its own.

A test module marked `redis_topologies` runs each of its tests twice: on that Redis, and on a
Redis Cluster of three masters the run starts for itself (`settings`, `resources`, `server`,
`client`, `users` and `ipapi_app` follow the topology; `base_settings` is always the single
Redis).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from sessions_config.resources import Resources, open_resources
from sessions_config.settings import Settings
from store.migrate import migrate
from store.sessions import IssuedSession, NewSession
from tests.infra import PostgresReplica, PostgresServer, RedisServer, SentinelGroup
from tests.ipapi_server import IpApiServer
from tests.redis_cluster import RedisCluster
from tests.servers import serve

RUN_ID = uuid.uuid4().hex[:10]
TOPOLOGIES = ("standalone", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    # OTEL_* of the developer's or CI's environment would turn traces on (or change them) for
    # any app made in this process, and OpenTelemetry reads some once, when imported: none
    # reaches the tests. Those that want one set it themselves.
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    config.addinivalue_line(
        "markers", "redis_topologies: run each test on a single Redis and on a Redis Cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_topology" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "redis_topologies"
    ):
        metafunc.parametrize("redis_topology", TOPOLOGIES, indirect=True, scope="session")


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    env = Settings()
    return env.model_copy(
        update={
            "database_url": with_database(env.database_url, f"sessions_test_{RUN_ID}"),
            "redis_key_prefix": f"test-{RUN_ID}:",
            "geo_provider": "offline",
            "geo_mmdb_path": None,
            # Webhook receivers of the tests listen on loopback; ten retries, a second apart.
            "webhook_allow_private": True,
            "webhook_retry_schedule": [timedelta(seconds=1)] * 10,
            "webhook_timeout": 2.0,
            "expiry_sweep_interval": 1.0,
        }
    )


@pytest.fixture(scope="session")
async def database(base_settings: Settings) -> AsyncIterator[str]:
    await migrate(base_settings.database_url)
    yield base_settings.database_url
    admin = await asyncpg.connect(base_settings.database_url, database="postgres")
    try:
        name = urlsplit(base_settings.database_url).path.lstrip("/")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def redis_keyspace(base_settings: Settings) -> AsyncIterator[str]:
    yield base_settings.redis_key_prefix
    redis = Redis.from_url(base_settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{base_settings.redis_key_prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
def redis_topology(request: pytest.FixtureRequest) -> str:
    """ "standalone" (the run's Redis), or "cluster" in modules marked redis_topologies."""
    return str(getattr(request, "param", "standalone"))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def settings(
    base_settings: Settings, redis_topology: str, request: pytest.FixtureRequest
) -> Settings:
    """base_settings on the Redis of the test's topology."""
    if redis_topology == "standalone":
        return base_settings
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return base_settings.model_copy(update={"redis_url": cluster.url, "redis_mode": "cluster"})


@pytest.fixture(scope="session")
async def resources(
    settings: Settings, database: str, redis_keyspace: str
) -> AsyncIterator[Resources]:
    async with open_resources(settings) as res:
        yield res


@pytest.fixture(scope="session")
def server(settings: Settings, database: str, redis_keyspace: str) -> Iterator[str]:
    """The app, served by uvicorn on loopback, with the offline geolocation provider."""
    with serve(settings) as url:
        yield url


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=20) as c:
        yield c


@pytest.fixture(scope="session")
def ipapi() -> Iterator[IpApiServer]:
    with IpApiServer() as fake:
        yield fake


@pytest.fixture(scope="session")
def ipapi_app(
    settings: Settings, database: str, redis_keyspace: str, ipapi: IpApiServer
) -> Iterator[str]:
    """A second app, whose provider is the ip-api protocol server on loopback."""
    with_ipapi = settings.model_copy(
        update={"geo_provider": "ip-api", "geo_ipapi_url": ipapi.url, "geo_timeout": 1.0}
    )
    with serve(with_ipapi) as url:
        yield url


@pytest.fixture(scope="session")
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the run's own, which tests may pause, kill and restart. A test that
    does must leave it running (e.g. `with own_redis.paused(): ...`)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A Postgres cluster of the run's own, migrated, which tests may pause, kill and restart;
    the same rule applies as for own_redis."""
    with PostgresServer() as server:
        await migrate(server.dsn("sessions"))
        yield server


@pytest.fixture(scope="session")
async def replicated_postgres() -> AsyncIterator[tuple[PostgresServer, PostgresReplica]]:
    """A Postgres cluster of the run's own (migrated) and a streaming replica of it, which tests
    may pause (its replay), kill and restart; a test that does must leave both running and
    replaying."""
    with PostgresServer() as primary:
        await migrate(primary.dsn("sessions"))
        with PostgresReplica(primary) as replica:
            yield primary, replica


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """A Redis master, its replica and three sentinels of the run's own, which tests may pause,
    kill and restart; a test that kills the master must rejoin() it (the group must be whole
    again, whichever node is master)."""
    with SentinelGroup() as group:
        yield group


@pytest.fixture(scope="session")
def fragile_settings(
    base_settings: Settings, own_postgres: PostgresServer, own_redis: RedisServer
) -> Settings:
    """Settings for an app on the run's own servers (see own_redis and own_postgres)."""
    # No event workers: these servers are paused and locked, and the requests' own effects
    # are what the tests watch.
    return base_settings.model_copy(
        update={
            "database_url": own_postgres.dsn("sessions"),
            "redis_url": own_redis.url,
            "event_workers": False,
        }
    )


@pytest.fixture(scope="session")
async def fragile_resources(fragile_settings: Settings) -> AsyncIterator[Resources]:
    async with open_resources(fragile_settings) as res:
        yield res


@pytest.fixture(scope="session")
def fragile_server(fragile_settings: Settings, fragile_resources: Resources) -> Iterator[str]:
    """The app, served on loopback, on the run's own Postgres and Redis."""
    with serve(fragile_settings) as url:
        yield url


@pytest.fixture
async def fragile_client(fragile_server: str) -> AsyncIterator[httpx.AsyncClient]:
    # Room for many connections at once (bursts, attackers and a victim); the timeout is a
    # "no hang" bound only: bounds are asserted on elapsed times.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=fragile_server, timeout=30, limits=limits) as c:
        yield c


class Users:
    """Makes sessions for fresh users, through the store's public API."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    @staticmethod
    def new_id() -> str:
        return f"user-{uuid.uuid4().hex[:12]}"

    async def session(
        self, user_id: str, ip: str = "81.2.69.142", **fields: object
    ) -> IssuedSession:
        return await self.resources.store.create(
            NewSession(
                user_id=user_id, ip=ip, user_agent=str(fields.pop("user_agent", "pytest")), **fields
            )  # type: ignore[arg-type]
        )


@pytest.fixture
def users(resources: Resources) -> Users:
    return Users(resources)


@pytest.fixture
def fragile_users(fragile_resources: Resources) -> Users:
    """Users of the app on the run's own servers (fragile_server)."""
    return Users(fragile_resources)

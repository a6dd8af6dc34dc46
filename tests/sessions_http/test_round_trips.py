"""One look at the sessions page costs the same round trips to Redis and Postgres whatever the
number of sessions: counted on the wire, through a proxy on loopback in front of each server."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import NewSession
from tests.app_client import ROUTE, cookie
from tests.conftest import Users
from tests.round_trips import CountingProxy, counting_proxy
from tests.servers import serve

# Redis: the cookie (its token's pointer, GET); the active list (one script on the user's slot,
# which also reads the cookie's own session); the geolocation cache (one MGET). Postgres: the
# history page, one query.
REDIS_PER_PAGE = 3
POSTGRES_PER_PAGE = 1


def through(url: str, proxy: CountingProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def add_sessions(resources: Resources, user_id: str, active: int, past: int) -> None:
    now = utcnow()
    await resources.store.create_many(
        [
            NewSession(
                user_id=user_id,
                ip=f"81.3.{i}.{active}",
                user_agent=f"Mozilla/5.0 device {i}",
                created_at=now - timedelta(hours=i + 2),
            )
            for i in range(active)
        ]
        + [
            NewSession(
                user_id=user_id,
                ip=f"89.161.{i}.{past}",
                user_agent="Mozilla/5.0 old device",
                created_at=now - timedelta(days=i + 2),
                ended_at=now - timedelta(days=i + 1),
            )
            for i in range(past)
        ]
    )


async def page_round_trips(
    client: httpx.AsyncClient, token: str, redis: CountingProxy, postgres: CountingProxy
) -> tuple[int, int]:
    """The round trips of one more look at the page, once the looks before it have settled
    (the first look at a place caches it; the first look of a minute records lastSeenAt). The
    fewer of two looks: a look that happens to cross into a new minute writes lastSeenAt too."""
    response = await client.get(ROUTE, headers=cookie(token))
    assert response.status_code == 200
    counts = []
    for _ in range(2):
        redis_before, postgres_before = redis.settled(), postgres.settled()
        response = await client.get(ROUTE, headers=cookie(token))
        assert response.status_code == 200
        counts.append((redis.settled() - redis_before, postgres.settled() - postgres_before))
    return min(counts)


async def test_a_page_costs_the_same_round_trips_for_3_sessions_as_for_90(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    redis_at, postgres_at = urlsplit(base_settings.redis_url), urlsplit(base_settings.database_url)
    with (
        counting_proxy(redis_at.hostname or "127.0.0.1", redis_at.port or 6379) as redis,
        counting_proxy(postgres_at.hostname or "127.0.0.1", postgres_at.port or 5432) as postgres,
    ):
        settings = base_settings.model_copy(
            update={
                "redis_url": through(base_settings.redis_url, redis),
                "database_url": through(base_settings.database_url, postgres),
            }
        )
        user_id = users.new_id()
        issued = await users.session(user_id, ip="81.2.69.142")
        await add_sessions(resources, user_id, active=2, past=1)
        with serve(settings) as url:
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                small = await page_round_trips(client, issued.token, redis, postgres)
                await add_sessions(resources, user_id, active=30, past=60)
                response = await client.get(ROUTE, headers=cookie(issued.token))
                assert len(response.json()["sessions"]) == 33
                assert len(response.json()["history"]) == 50
                large = await page_round_trips(client, issued.token, redis, postgres)
    assert small == large == (REDIS_PER_PAGE, POSTGRES_PER_PAGE)

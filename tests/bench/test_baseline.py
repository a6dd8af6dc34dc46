"""bench/baseline.py, the hand-written page the benchmarks compare the service with, answers
exactly the service's bytes for the same user: timestamps, floats, non-ASCII text, IPv6 (also
IPv4-mapped), addresses without geolocation, history rows that ended or expired, `?limit=`,
and the 401."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis

from bench.baseline import Baseline, Config, create_app
from sessions_config.settings import Settings
from sessions_geo.lookup import global_ip
from sessions_geo.model import GeoInfo
from store.models import utcnow
from tests.app_client import ROUTE, cookie, fresh_ip
from tests.conftest import Users

# Non-ASCII text, floats, a false flag and unknown fields: written to the cache as the service does.
ZURICH = GeoInfo(city="Zürich", country_code="CH", lat=47.3769, lon=8.5417, is_mobile=False)


@pytest.fixture
async def redis(base_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(base_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def baseline(
    base_settings: Settings, database: str, redis_keyspace: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The baseline app in this process, on the run's database and keyspace."""
    config = Config(database, base_settings.redis_url, redis_keyspace, provider="offline")
    app = create_app(config)
    async with Baseline.open(config) as opened:
        app.state.baseline = opened
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baseline") as client:
            yield client


async def seed(users: Users, redis: Redis, prefix: str) -> tuple[str, list[str]]:
    """A user with every kind of row the page shows; returns the newest session's token and
    the IPs of the user's sessions."""
    uid, now = Users.new_id(), utcnow()
    zurich = fresh_ip()
    await redis.set(f"{prefix}geo:offline:{zurich}", ZURICH.to_json(), ex=600)
    mapped = f"::ffff:{fresh_ip()}"  # IPv4-mapped IPv6: Postgres and Python spell it otherwise
    ips = [zurich, "2001:4860:4860::8888", "10.1.2.3", fresh_ip(), mapped, fresh_ip()]
    for n, ip in enumerate(ips[1:4], start=1):
        await users.session(uid, ip=ip, created_at=now - timedelta(hours=n))
    for n, ip in enumerate(ips[4:], start=1):
        ended = now - timedelta(days=n)
        await users.session(
            uid, ip=ip, created_at=ended - timedelta(hours=1), ended_at=ended, end_reason="logout"
        )
    created = now - timedelta(days=40)  # expired, never ended: history, reason expired
    await users.session(uid, ip=ips[0], created_at=created, expires_at=created + timedelta(days=1))
    current = await users.session(uid, ip=zurich, user_agent="Mozilla/5.0 (Linux; Ünïcode)")
    return current.token, ips


async def wait_for_geo_cache(redis: Redis, prefix: str, ips: list[str]) -> None:
    """The service caches what its provider found just after answering: wait for it."""
    canonical = [global_ip(ip) for ip in ips]
    keys = [f"{prefix}geo:offline:{ip}" for ip in canonical if ip is not None]
    for _ in range(200):
        if await redis.exists(*keys) == len(keys):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the service did not cache the geolocation of the page's IPs")


async def test_the_baseline_answers_the_services_bytes(
    client: httpx.AsyncClient,
    baseline: httpx.AsyncClient,
    users: Users,
    redis: Redis,
    redis_keyspace: str,
) -> None:
    token, ips = await seed(users, redis, redis_keyspace)
    assert (await client.get(ROUTE, headers=cookie(token))).status_code == 200
    await wait_for_geo_cache(redis, redis_keyspace, ips)
    for path in (ROUTE, f"{ROUTE}?limit=1", f"{ROUTE}?limit=0"):
        service = await client.get(path, headers=cookie(token))
        ours = await baseline.get(path, headers=cookie(token))
        assert service.status_code == ours.status_code == 200, service.text
        assert ours.content == service.content
    assert "Zürich".encode() in ours.content and b"47.3769" in ours.content


@pytest.mark.parametrize("headers", [{}, cookie("x" * 43), cookie("not a token")])
async def test_the_baseline_refuses_as_the_service_does(
    client: httpx.AsyncClient, baseline: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    service = await client.get(ROUTE, headers=headers)
    ours = await baseline.get(ROUTE, headers=headers)
    assert service.status_code == ours.status_code == 401
    assert ours.content == service.content

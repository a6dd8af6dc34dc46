"""Shared set-up for the benchmarks: a database and Redis prefix of their own, removed after."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis

from sessions_config.settings import Settings
from store.migrate import migrate


@contextmanager
def bench_environment() -> Iterator[dict[str, str]]:
    """Yields environment variables naming a fresh database and key prefix; drops both after."""
    env = Settings()
    run = uuid.uuid4().hex[:8]
    parts = urlsplit(env.database_url)
    database_url = urlunsplit(parts._replace(path=f"/sessions_bench_{run}"))
    prefix = f"bench-{run}:"
    asyncio.run(migrate(database_url))
    try:
        yield {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": env.redis_url,
            "REDIS_KEY_PREFIX": prefix,
        }
    finally:
        asyncio.run(_cleanup(database_url, env.redis_url, prefix))


async def _cleanup(database_url: str, redis_url: str, prefix: str) -> None:
    admin = await asyncpg.connect(database_url, database="postgres")
    try:
        name = urlsplit(database_url).path.lstrip("/")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()

"""The run's own servers come up, pause, resume, and come back after a kill."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from tests.infra import PostgresServer, RedisServer


async def test_own_redis_survives_kill_and_start(own_redis: RedisServer) -> None:
    client = Redis.from_url(own_redis.url)
    try:
        await client.set("k", "v")
    finally:
        await client.aclose()
    own_redis.kill()
    own_redis.start()
    client = Redis.from_url(own_redis.url)
    try:
        assert await client.get("k") is None  # memory-only: a restart forgets
    finally:
        await client.aclose()


async def test_own_postgres_keeps_data_across_kill(own_postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(own_postgres.dsn("sessions"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()
    own_postgres.kill()
    own_postgres.start()
    conn = await asyncpg.connect(own_postgres.dsn("sessions"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()

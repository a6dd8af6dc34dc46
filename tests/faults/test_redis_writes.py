"""A write to a Redis that has stopped reading is bounded like a read: once the socket's buffers
are full, the client gives up after its timeout (REDIS's socket timeout) with redis-py's own
error, drops that connection, and works again on a fresh one when Redis does."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from sessions_config.resources import redis_client
from sessions_config.settings import Settings
from tests.infra import RedisServer

# More than loopback's socket buffers hold, so the write itself must wait.
LARGE = b"x" * (64 * 1024 * 1024)


async def test_a_write_that_cannot_finish_times_out(
    fragile_settings: Settings, own_redis: RedisServer
) -> None:
    settings = fragile_settings.model_copy(update={"storage_timeout": 1.0})
    client = redis_client(settings)
    key = f"{settings.redis_key_prefix}large-write-test"
    try:
        await client.ping()
        with own_redis.paused():
            # wait_for is the "no hang" bound: what it raises is not redis-py's error.
            with pytest.raises(redis.exceptions.TimeoutError, match="writing to socket"):
                await asyncio.wait_for(client.set(key, LARGE), 20)
        assert await client.ping()
    finally:
        await client.delete(key)
        await client.aclose()

"""The Redis client the store is given: one server's (standalone, or a Sentinel group's
master) or a Redis Cluster's. The few places where the two differ are here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

RedisClient: TypeAlias = Redis | RedisCluster

DEFAULT_TIMEOUT = 5.0  # seconds, for a client without a socket timeout


def reply_timeout(redis: RedisClient) -> float:
    """Seconds the client waits for a reply (its socket timeout)."""
    if isinstance(redis, RedisCluster):
        kwargs = redis.get_connection_kwargs()
    else:
        kwargs = redis.connection_pool.connection_kwargs
    return float(kwargs.get("socket_timeout") or DEFAULT_TIMEOUT)


async def get_many(redis: RedisClient, keys: Sequence[str]) -> list[Any]:
    """The values of many keys: one MGET on one server; on a cluster, one MGET per slot, sent
    to each node at once (an MGET across slots is refused there)."""
    if isinstance(redis, RedisCluster):
        return await redis.mget_nonatomic(keys)
    return await redis.mget(keys)


def eval_script(client: Any, script: str, *, keys: Sequence[str], args: Sequence[str | int]) -> Any:
    """Runs a Lua script by its text (EVAL). A cluster pipeline cannot send EVALSHA, and a
    server that has not cached a script yet (a new master after a failover) runs it all the
    same; Redis caches each script's compilation, so the text is only sent again, not compiled.
    On a pipeline this queues the script; on a client it returns the awaitable reply."""
    return client.eval(script, len(keys), *keys, *args)

"""Redis: the geolocation cache. One JSON string per (provider, IP), with a TTL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from store.client import RedisClient, get_many
from store.keys import Keys


def _text(value: bytes | str) -> str | None:
    """The entry as text; None for bytes that are not UTF-8 (no entry of ours: a miss)."""
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


class CacheEntry(NamedTuple):
    json: str  # GeoInfo.to_json(), or "null" for an IP the provider knows nothing of
    ttl: int  # seconds


class GeoCache:
    def __init__(self, redis: RedisClient, keys: Keys, provider: str) -> None:
        self._redis = redis
        self._keys = keys
        self._provider = provider

    async def get_many(self, ips: Sequence[str]) -> dict[str, str]:
        """The cached JSON for each IP that has a readable one: a single MGET (one per slot on a
        cluster). The caller still checks what the JSON says (GeoInfo.from_json)."""
        if not ips:
            return {}
        values = await get_many(self._redis, [self._keys.geo(self._provider, ip) for ip in ips])
        texts = {ip: _text(v) for ip, v in zip(ips, values, strict=True) if v is not None}
        return {ip: text for ip, text in texts.items() if text is not None}

    async def put_many(self, entries: Mapping[str, CacheEntry]) -> None:
        """Stores an entry for each IP, in one pipelined round trip."""
        if not entries:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for ip, entry in entries.items():
                pipe.set(self._keys.geo(self._provider, ip), entry.json, ex=entry.ttl)
            await pipe.execute()

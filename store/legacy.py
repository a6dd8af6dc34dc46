"""Moving sessions from the Redis layout before hash tags (`sessions-api migrate-redis`).

That layout kept a session at `session:<token hash>` and a user's index at
`user:<user_id>:sessions`, names a Redis Cluster cannot keep together, so only a single Redis
(standalone, or a Sentinel group's master) ever held it. One script per session moves it whole,
on that one server: it copies the HASH (an end mark included) with its expiry to the user's
slot, indexes it, points its token at it, and deletes the old HASH and index entry. A session is
thus in one layout or the other, never both, and moving again finds only what is left.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store.client import RedisClient, eval_script
from store.keys import Keys

# KEYS: old HASH, old index, new HASH, new index, pointer. ARGV: token hash, user id, now (Unix
# s). 1: moved; 0: gone meanwhile; -2: its user_id is not the one read (left alone); -3: it has
# no expiry (a writer's bug: left for the operator, who decides how long it lives).
_MOVE = """
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return 0 end
local user_id
for i = 1, #flat, 2 do
  if flat[i] == 'user_id' then user_id = flat[i + 1] end
end
if user_id ~= ARGV[2] then return -2 end
local at = redis.call('EXPIRETIME', KEYS[1])
if at < 0 then return -3 end
redis.call('HSET', KEYS[3], unpack(flat))
redis.call('EXPIREAT', KEYS[3], at)
redis.call('ZADD', KEYS[4], at, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[3])
redis.call('EXPIREAT', KEYS[4], at, 'NX')
redis.call('EXPIREAT', KEYS[4], at, 'GT')
redis.call('SET', KEYS[5], ARGV[2], 'EXAT', at)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

MOVED, GONE, OTHER_USER, NO_EXPIRY = 1, 0, -2, -3


@dataclass
class Batch:
    moved: dict[str, str]  # token hash -> user id, of the sessions moved
    skipped: list[str]  # token hashes left in the old layout (no user_id, or no expiry)


def _glob_escaped(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class LegacySessions:
    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def batches(self, *, now: datetime, size: int) -> AsyncIterator[Batch]:
        """Moves every session of the old layout, `size` at a time; yields what each batch did."""
        old = self._keys.legacy_session("")
        hashes: list[str] = []
        async for key in self._redis.scan_iter(match=f"{_glob_escaped(old)}*", count=size):
            hashes.append(_text(key)[len(old) :])
            if len(hashes) >= size:
                yield await self._move_many(hashes, now=now)
                hashes = []
        if hashes:
            yield await self._move_many(hashes, now=now)

    async def _move_many(self, token_hashes: Sequence[str], *, now: datetime) -> Batch:
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash in token_hashes:
                pipe.hget(self._keys.legacy_session(token_hash), "user_id")
                pipe.exists(self._keys.legacy_session(token_hash))
            read = await pipe.execute()
        owners: dict[str, str] = {}
        skipped: list[str] = []
        for token_hash, user, exists in zip(token_hashes, read[::2], read[1::2], strict=True):
            if user is not None:
                owners[token_hash] = _text(user)
            elif exists:
                skipped.append(token_hash)  # no user_id: unreadable in either layout
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash, user_id in owners.items():
                eval_script(
                    pipe,
                    _MOVE,
                    keys=[
                        self._keys.legacy_session(token_hash),
                        self._keys.legacy_user_sessions(user_id),
                        self._keys.session(user_id, token_hash),
                        self._keys.user_sessions(user_id),
                        self._keys.token(token_hash),
                    ],
                    args=[token_hash, user_id, int(now.timestamp())],
                )
            results = await pipe.execute()
        moved = {}
        for (token_hash, user_id), result in zip(owners.items(), results, strict=True):
            if result == MOVED:
                moved[token_hash] = user_id
            elif result != GONE:
                skipped.append(token_hash)
        return Batch(moved, skipped)

"""Redis: the active sessions and each user's index of them.

A session is a HASH at `session:{sha256(token)}` that expires at the session's expires_at, and a
member of the user's ZSET `user:{user_id}:sessions` scored by expires_at. The ZSET can hold
members whose HASH has expired: readers skip them, writers prune them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from store.keys import Keys
from store.models import SessionRecord, canonical_session_id, format_timestamp, parse_timestamp

log = logging.getLogger(__name__)

# Sets last_seen_at unless it is already later than the threshold (ARGV[2]), so concurrent
# workers write it at most once per interval. Never recreates a hash that has expired.
# ISO timestamps of one format compare correctly as strings.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local last = redis.call('HGET', KEYS[1], 'last_seen_at')
if last and last > ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_hash(record: SessionRecord) -> dict[Any, Any]:
    return {
        "id": record.id,
        "user_id": record.user_id,
        "token_suffix": record.token_suffix,
        "created_at": format_timestamp(record.created_at),
        "expires_at": format_timestamp(record.expires_at),
        "client_ip": record.client_ip,
        "user_agent": record.user_agent,
        "last_seen_at": format_timestamp(record.last_seen_at or record.created_at),
    }


def _from_hash(token_hash: str, data: Mapping[Any, Any]) -> SessionRecord | None:
    """Reads a stored HASH; None (and a warning) for one too damaged to show."""
    if not data:
        return None
    try:
        fields = {_text(k): _text(v) for k, v in data.items()}
        # Other writers may spell the UUID otherwise; ids are compared in one spelling.
        session_id = canonical_session_id(fields["id"])
        if session_id is None:
            raise ValueError(f"id is not a UUID: {fields['id'][:40]!r}")
        return SessionRecord(
            id=session_id,
            user_id=fields["user_id"],
            token_hash=token_hash,
            token_suffix=fields.get("token_suffix", ""),
            created_at=parse_timestamp(fields["created_at"]),
            expires_at=parse_timestamp(fields["expires_at"]),
            client_ip=fields.get("client_ip", ""),
            user_agent=fields.get("user_agent", ""),
            last_seen_at=parse_timestamp(fields["last_seen_at"])
            if fields.get("last_seen_at")
            else None,
        )
    except (KeyError, ValueError) as exc:
        log.warning("skipping unreadable session hash %s…: %r", token_hash[:12], exc)
        return None


class ActiveSessions:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._touch = redis.register_script(_TOUCH)

    async def get(self, *, token_hash: str, now: datetime) -> SessionRecord | None:
        data = await self._redis.hgetall(self._keys.session(token_hash))
        record = _from_hash(token_hash, data)
        if record is None or record.expires_at <= now:
            return None
        return record

    async def list_for_user(self, *, user_id: str, now: datetime) -> list[SessionRecord]:
        """The user's active sessions, newest first: one ZRANGE, then one pipelined HGETALL each."""
        index = self._keys.user_sessions(user_id)
        members = await self._redis.zrangebyscore(index, f"({int(now.timestamp())}", "+inf")
        if not members:
            return []
        hashes = [_text(m) for m in members]
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash in hashes:
                pipe.hgetall(self._keys.session(token_hash))
            found = await pipe.execute()
        records = []
        for token_hash, data in zip(hashes, found, strict=True):
            record = _from_hash(token_hash, data)
            # Another user's hash listed in this index would be a writer's bug; never show it.
            if record and record.user_id == user_id and record.expires_at > now:
                records.append(record)
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return records

    async def put_many(self, *, records: Sequence[SessionRecord], now: datetime) -> None:
        """Writes sessions and indexes them, in one pipelined round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                key = self._keys.session(record.token_hash)
                index = self._keys.user_sessions(record.user_id)
                expires = int(record.expires_at.timestamp())
                pipe.hset(key, mapping=_to_hash(record))
                pipe.expireat(key, expires)
                pipe.zadd(index, {record.token_hash: expires})
                pipe.zremrangebyscore(index, "-inf", int(now.timestamp()))
                # The index lives as long as its longest-lived session: NX sets a first TTL,
                # GT only ever extends it.
                pipe.expireat(index, expires, nx=True)
                pipe.expireat(index, expires, gt=True)
            await pipe.execute()

    async def missing(self, *, token_hashes: Sequence[str]) -> set[str]:
        """Which of these sessions have no HASH in Redis."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash in token_hashes:
                pipe.exists(self._keys.session(token_hash))
            found = await pipe.execute()
        return {h for h, n in zip(token_hashes, found, strict=True) if not n}

    async def touch(self, *, token_hash: str, at: datetime, unless_after: datetime) -> bool:
        """Sets last_seen_at to `at` unless it is already later than `unless_after`.

        True when it wrote; False when it was recent enough or the session is gone.
        """
        written = await self._touch(
            keys=[self._keys.session(token_hash)],
            args=[format_timestamp(at), format_timestamp(unless_after)],
        )
        return bool(written == 1)

    async def remove(self, *, token_hash: str, user_id: str) -> None:
        await self.remove_many(token_hashes=[token_hash], user_id=user_id)

    async def remove_many(self, *, token_hashes: Sequence[str], user_id: str) -> None:
        if not token_hashes:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(self._keys.session(h) for h in token_hashes))
            pipe.zrem(self._keys.user_sessions(user_id), *token_hashes)
            await pipe.execute()

    async def remove_user(self, *, user_id: str, token_hashes: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for token_hash in token_hashes:
                pipe.delete(self._keys.session(token_hash))
            pipe.delete(self._keys.user_sessions(user_id))
            await pipe.execute()


async def ping(redis: Redis) -> None:
    await redis.ping()

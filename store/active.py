"""Redis: the active sessions, each user's index of them, and the tokens' pointers to users.

A session is a HASH at `{user:<user_id>}:session:<sha256(token)>` that expires at the session's
expires_at, and a member of the user's ZSET `{user:<user_id>}:sessions` scored by expires_at:
one hash tag, so one Redis Cluster slot holds a user's sessions and index, and one script reads
or writes them. The ZSET can hold members whose HASH has expired: readers skip them, writers
prune them. A token is found by `token:<sha256(token)>`, a STRING holding the user id, which
expires with the session. The pointer only says where to look: a session is active because its
HASH is, never because a pointer exists.

Ending a session first marks its HASH (`ended_at`, `end_reason`): from then on it is not active,
whatever happens to the rest of the end (docs/DATA.md). A marked HASH is never unmarked.

Every write is a Lua script that first compares Redis's clock with a deadline taken from Redis's
clock just before (`deadline`), and does nothing past it. A write sent to a Redis that hangs
(stopped, paused, swamped) sits in its socket and runs when it wakes up, long after this client
gave up on it and, perhaps, undid it: past the deadline it changes nothing. Each script touches
one slot's keys, so a pipeline of them never depends on two sessions' keys being on one server.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from redis.exceptions import TimeoutError as RedisTimeoutError

from store.client import RedisClient, eval_script, reply_timeout
from store.keys import Keys
from store.memo import memo_of_short_texts
from store.models import (
    END_REASONS,
    EndReason,
    SessionRecord,
    canonical_session_id,
    format_timestamp,
    parse_timestamp,
    utcnow,
)

log = logging.getLogger(__name__)

# The share of the client's socket timeout a write may take to start running on the server. The
# rest is a margin for the reply to arrive before the client stops waiting for it, so a write
# that ran is (almost always) one the client heard about.
DEADLINE_SHARE = 0.8

# Returns true when Redis's clock (µs) is past ARGV[1]. Scripts replicate their effects, so
# reading TIME before writing is allowed (Redis 5 and later).
_LATE = """
local now = redis.call('TIME')
if tonumber(now[1]) * 1000000 + tonumber(now[2]) > tonumber(ARGV[1]) then return -1 end
"""

# KEYS: session HASH, user index. ARGV: deadline, now (Unix s), expires_at (Unix s), token hash,
# then the HASH's fields and values. A HASH already marked ended is left alone (0): never revive
# a session someone is ending.
_PUT = (
    _LATE
    + """
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
-- The index lives as long as its longest-lived session: NX sets a first TTL, GT extends it.
redis.call('EXPIREAT', KEYS[2], ARGV[3], 'NX')
redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
return 1
"""
)

# KEYS: session HASH. ARGV: deadline, ended_at, end_reason. Marks the session ended (the first
# mark stays) and returns the HASH as it now is; 0 if there is no HASH.
_MARK_ENDED = (
    _LATE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'end_reason', ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: session HASH, user index. ARGV: deadline, token hash.
_REMOVE = (
    _LATE
    + """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""
)

# KEYS: one key. ARGV: deadline.
_DELETE = (
    _LATE
    + """
redis.call('DEL', KEYS[1])
return 1
"""
)

# KEYS: a token's pointer. ARGV: deadline, user id, expires_at (Unix s).
_POINT = (
    _LATE
    + """
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1
"""
)

# KEYS: a user's index, and optionally one session HASH of theirs. ARGV: now (Unix s), the
# prefix of the user's session HASHes. Returns {index members not yet expired, each followed by
# its HASH (empty if gone), the HASH of KEYS[2]}. The HASHes it names from the index share the
# index's hash tag, so they are in its slot. Flagged no-writes, so that it runs while Redis holds
# writes (CLIENT PAUSE WRITE, as in a failover) and when it is out of memory.
_READ = """#!lua flags=no-writes
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local listed = {}
for _, member in ipairs(members) do
  listed[#listed + 1] = member
  listed[#listed + 1] = redis.call('HGETALL', ARGV[2] .. member)
end
local current = {}
if KEYS[2] then current = redis.call('HGETALL', KEYS[2]) end
return {listed, current}
"""

# Sets last_seen_at unless it is already later than the threshold (ARGV[3]), so concurrent
# workers write it at most once per interval; then answers the value it kept. Never recreates a
# hash that has expired, nor touches one marked ended (-2). ISO timestamps of one format compare
# correctly as strings.
_TOUCH = (
    _LATE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 1 then return -2 end
local last = redis.call('HGET', KEYS[1], 'last_seen_at')
if last and last > ARGV[3] then return last end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[2])
return 1
"""
)

LATE = -1


class TooLate(RedisTimeoutError):
    """Redis ran a write after its deadline, so the write did nothing."""


# Stored ids and times are parsed once per process (store/memo.py): every look at a user's
# sessions reads the same ones again. None this service writes is longer than 64 characters.
_memo = memo_of_short_texts(entries=16384, max_text=64)
_session_id = _memo(canonical_session_id)
_timestamp = _memo(parse_timestamp)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_hash(record: SessionRecord) -> dict[str, str]:
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


@dataclass(frozen=True, slots=True)
class Mark:
    """A session marked ended in Redis, whose end may not be finished (in Postgres, in Redis)."""

    token_hash: str
    user_id: str  # empty if the HASH cannot be read
    ended_at: datetime
    end_reason: EndReason
    record: SessionRecord | None  # the session as Redis holds it; None if it cannot be read


def _fields(data: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in data.items()}


class _Unreadable(ValueError):
    pass


# Whole HASHes are read once per process too, by their token hash and exact contents: every
# request reads its own session's again, and every look at a page its user's. Only HASHes not
# marked ended (those are read once, then removed), and only those that read (a damaged one is
# refused, and warned of, each time). A SessionRecord is immutable: one serves every reader.
_HASHES_REMEMBERED = 4096


@functools.lru_cache(maxsize=_HASHES_REMEMBERED)
def _unmarked_record(token_hash: str, flat: tuple[Any, ...]) -> SessionRecord:
    record = _record_of(token_hash, _fields(_pairs(flat)))
    if record is None:
        raise _Unreadable
    return record


def _from_hash(token_hash: str, flat: Sequence[Any]) -> SessionRecord | None:
    """Reads a stored HASH, as HGETALL's flat list of fields and values; None (and a warning)
    for one too damaged to show. A HASH marked ended comes back with ended_at and end_reason
    set."""
    if not flat:
        return None
    if b"ended_at" not in flat[::2] and "ended_at" not in flat[::2]:
        try:
            return _unmarked_record(token_hash, tuple(flat))
        except _Unreadable:
            return None
    fields = _fields(_pairs(flat))
    record = _record_of(token_hash, fields)
    mark = _mark_of(token_hash, fields, record)
    if record is None or mark is None:
        return record
    return replace(record, ended_at=mark.ended_at, end_reason=mark.end_reason)


def _record_of(token_hash: str, fields: Mapping[str, str]) -> SessionRecord | None:
    """The session of a HASH's fields, leaving out its end mark; None (and a warning) for one
    too damaged to show."""
    try:
        # Other writers may spell the UUID otherwise; ids are compared in one spelling.
        session_id = _session_id(fields["id"])
        if session_id is None:
            raise ValueError(f"id is not a UUID: {fields['id'][:40]!r}")
        record = SessionRecord(
            id=session_id,
            user_id=fields["user_id"],
            token_hash=token_hash,
            token_suffix=fields.get("token_suffix", ""),
            created_at=_timestamp(fields["created_at"]),
            expires_at=_timestamp(fields["expires_at"]),
            client_ip=fields.get("client_ip", ""),
            user_agent=fields.get("user_agent", ""),
            last_seen_at=_timestamp(fields["last_seen_at"]) if fields.get("last_seen_at") else None,
        )
    except (KeyError, ValueError) as exc:
        log.warning("skipping unreadable session hash %s…: %r", token_hash[:12], exc)
        return None
    return record


def _mark_of(
    token_hash: str, fields: Mapping[str, str], record: SessionRecord | None
) -> Mark | None:
    """The end mark of a HASH's fields, or None if it has none."""
    if "ended_at" not in fields:
        return None
    # Any ended_at means ended, even one another writer spelt in a way this reader cannot parse.
    try:
        ended_at = _timestamp(fields["ended_at"])
    except ValueError:
        ended_at = utcnow()
    reason = fields.get("end_reason")
    return Mark(
        token_hash=token_hash,
        user_id=fields.get("user_id", ""),
        ended_at=ended_at,
        end_reason=next((r for r in END_REASONS if r == reason), "revoked"),
        record=record,
    )


def _read_mark(token_hash: str, flat: Sequence[Any]) -> Mark | None:
    return _mark_of(token_hash, _fields(_pairs(flat)), _from_hash(token_hash, flat))


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flat(data: Mapping[Any, Any]) -> list[Any]:
    """A HASH as HGETALL's reply lists it (redis-py makes a dict of it outside scripts)."""
    return [item for pair in data.items() for item in pair]


class States(NamedTuple):
    missing: set[str]  # token hashes with no HASH
    marked: dict[str, Mark]  # token hash -> its mark, for HASHes marked ended


class Touched(NamedTuple):
    wrote: bool
    last_seen_at: datetime | None  # as the session now has it; None if it has none any more


class Found(NamedTuple):
    """A token's active session, and its user's sessions read with it (as `list_for_user` with
    include_ended reads them), so that a page needs no second look at the index."""

    session: SessionRecord
    listed: list[SessionRecord]


class Unacknowledged(RedisTimeoutError):
    """Too few replicas acknowledged a write in time: a failover could still lose it."""


class RedisSessions:
    def __init__(self, redis: RedisClient, keys: Keys, *, wait_replicas: int = 0) -> None:
        self._redis = redis
        # Replicas that must have an end mark before the end is recorded (REDIS_WAIT_REPLICAS).
        self._wait_replicas = wait_replicas
        self._keys = keys
        # Seconds this client waits for a reply (its socket timeout).
        self.timeout = reply_timeout(redis)
        self._budget_us = int(self.timeout * DEADLINE_SHARE * 1_000_000)

    # -- reading -------------------------------------------------------------------------------

    async def find(self, *, token_hash: str, now: datetime) -> Found | None:
        """The session of a token if it is active (present, not marked ended, not expired), with
        its user's sessions: two round trips, the pointer and then one script on the user's
        slot."""
        user = await self._redis.get(self._keys.token(token_hash))
        if user is None:
            return None
        user_id = _text(user)
        listed, current = await self._read(
            [self._keys.user_sessions(user_id), self._keys.session(user_id, token_hash)],
            now=now,
            prefix=self._keys.session_prefix(user_id),
        )
        record = _from_hash(token_hash, current)
        if (
            record is None
            or record.user_id != user_id
            or record.ended_at is not None
            or record.expires_at <= now
        ):
            return None
        return Found(record, self._listed(user_id, listed, now=now, include_ended=True))

    async def get(self, *, token_hash: str, now: datetime) -> SessionRecord | None:
        """The session if it is active: present, not marked ended, not expired."""
        found = await self.find(token_hash=token_hash, now=now)
        return found.session if found is not None else None

    async def list_for_user(
        self, *, user_id: str, now: datetime, include_ended: bool = False
    ) -> list[SessionRecord]:
        """The user's active sessions, newest first: one script, which reads the index and each
        session's HASH. With include_ended, also those marked ended whose end is not finished
        (ended_at set)."""
        listed, _ = await self._read(
            [self._keys.user_sessions(user_id)],
            now=now,
            prefix=self._keys.session_prefix(user_id),
        )
        return self._listed(user_id, listed, now=now, include_ended=include_ended)

    async def _read(self, keys: list[str], *, now: datetime, prefix: str) -> Any:
        # By its text (see eval_script): a server that holds writes (CLIENT PAUSE WRITE, in a
        # failover) runs a no-writes script at once, but holds an EVALSHA of a script it has not
        # cached yet, not knowing its flags.
        return await eval_script(self._redis, _READ, keys=keys, args=[int(now.timestamp()), prefix])

    @staticmethod
    def _listed(
        user_id: str, flat: Sequence[Any], *, now: datetime, include_ended: bool
    ) -> list[SessionRecord]:
        records = []
        for member, data in zip(flat[::2], flat[1::2], strict=True):
            record = _from_hash(_text(member), data)
            # A HASH naming another user would be a writer's bug; never show it.
            if (
                record
                and record.user_id == user_id
                and record.expires_at > now
                and (include_ended or record.ended_at is None)
            ):
                records.append(record)
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return records

    async def owners(self, token_hashes: Sequence[str]) -> dict[str, str]:
        """The user ids the tokens' pointers name (token hash -> user id), for those that have
        one: one pipelined GET each (on a cluster, pointers live on every node)."""
        if not token_hashes:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash in token_hashes:
                pipe.get(self._keys.token(token_hash))
            found = await pipe.execute()
        return {h: _text(u) for h, u in zip(token_hashes, found, strict=True) if u is not None}

    async def states(self, *, sessions: Mapping[str, str]) -> States:
        """Which of these sessions (token hash -> user id) Redis lacks (no HASH), and which it
        holds marked ended."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash, user_id in sessions.items():
                pipe.hgetall(self._keys.session(user_id, token_hash))
            found = await pipe.execute()
        missing = set()
        marked = {}
        for token_hash, data in zip(sessions, found, strict=True):
            if not data:
                missing.add(token_hash)
            elif (mark := _read_mark(token_hash, _flat(data))) is not None:
                marked[token_hash] = mark
        return States(missing, marked)

    # -- writing (each one script per session and slot, guarded by a deadline) ----------------

    async def deadline(self) -> int:
        """The moment (µs on Redis's clock) after which a write sent now does nothing. Reading
        Redis's own clock keeps other machines' clocks out of it; if Redis does not answer,
        this raises and nothing has been sent."""
        seconds, micros = await self._redis.time()
        return int(seconds) * 1_000_000 + int(micros) + self._budget_us

    async def put_many(
        self, *, records: Sequence[SessionRecord], now: datetime, deadline: int | None = None
    ) -> None:
        """Writes sessions, indexes them and points their tokens at them, in one pipelined round
        trip. Raises TooLate if any ran past the deadline (those wrote nothing; the others did).
        """
        if not records:
            return
        deadline = deadline if deadline is not None else await self.deadline()
        now_s = int(now.timestamp())
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                expires = int(record.expires_at.timestamp())
                args: list[str | int] = [deadline, now_s, expires, record.token_hash]
                for name, value in _to_hash(record).items():
                    args += (name, value)
                eval_script(
                    pipe,
                    _PUT,
                    keys=[
                        self._keys.session(record.user_id, record.token_hash),
                        self._keys.user_sessions(record.user_id),
                    ],
                    args=args,
                )
                eval_script(
                    pipe,
                    _POINT,
                    keys=[self._keys.token(record.token_hash)],
                    args=[deadline, record.user_id, expires],
                )
            results = await pipe.execute()
        if LATE in results:
            raise TooLate(f"{results.count(LATE)} of {len(results)} session writes came too late")
        written = results[::2]
        if 0 in written:
            skipped = [r.token_hash[:12] for r, n in zip(records, written, strict=True) if n == 0]
            log.warning("not rewritten, being ended: sessions %s…", "…, ".join(skipped))

    async def mark_ended(
        self, *, sessions: Mapping[str, str], at: datetime, reason: EndReason
    ) -> dict[str, Mark]:
        """Marks sessions (token hash -> user id) ended, so they stop being active at once.
        Returns those that exist in Redis, as marked (an earlier mark's ended_at and reason are
        kept). Raises if Redis does not answer or any mark came too late: the marks that did run
        stay, and are safe."""
        if not sessions:
            return {}
        deadline = await self.deadline()
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash, user_id in sessions.items():
                eval_script(
                    pipe,
                    _MARK_ENDED,
                    keys=[self._keys.session(user_id, token_hash)],
                    args=[deadline, format_timestamp(at), reason],
                )
            results = await pipe.execute()
        if LATE in results:
            raise TooLate(f"{results.count(LATE)} of {len(results)} ends came too late")
        marked = {}
        for token_hash, result in zip(sessions, results, strict=True):
            # A list is the HASH the script has just marked (0: no such session).
            if isinstance(result, list) and (mark := _read_mark(token_hash, result)):
                marked[token_hash] = mark
        return marked

    async def replicated(self) -> None:
        """Returns once REDIS_WAIT_REPLICAS replicas have every write the master has taken so
        far, from any client (this one's end marks, or marks an earlier end left); raises
        Unacknowledged if they do not within the write budget. WAIT counts the writes of its
        own connection only: the PUBLISH before it (to no one) is one, after all the others."""
        if not self._wait_replicas:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.publish(f"{self._keys.prefix}replicated", "")
            pipe.wait(self._wait_replicas, self._budget_us // 1000)
            _, replicas = await pipe.execute()
        if replicas < self._wait_replicas:
            raise Unacknowledged(f"{replicas} of {self._wait_replicas} replicas have the writes")

    async def remove_many(self, *, sessions: Mapping[str, str]) -> set[str]:
        """Removes sessions (token hash -> user id) from Redis, each on its own: the HASH and
        index entry, then the pointer. Returns the hashes removed whole (all, unless some came
        too late). Raises if Redis does not answer."""
        if not sessions:
            return set()
        deadline = await self.deadline()
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_hash, user_id in sessions.items():
                eval_script(
                    pipe,
                    _REMOVE,
                    keys=[
                        self._keys.session(user_id, token_hash),
                        self._keys.user_sessions(user_id),
                    ],
                    args=[deadline, token_hash],
                )
                eval_script(pipe, _DELETE, keys=[self._keys.token(token_hash)], args=[deadline])
            results = await pipe.execute(raise_on_error=False)
        pairs = zip(results[::2], results[1::2], strict=True)
        return {h for h, (a, b) in zip(sessions, pairs, strict=True) if a == 1 and b == 1}

    async def remove_user(self, *, user_id: str, token_hashes: Sequence[str]) -> None:
        """Removes a user's sessions and index."""
        removed = await self.remove_many(sessions=dict.fromkeys(token_hashes, user_id))
        deadline = await self.deadline()
        dropped = await eval_script(
            self._redis, _DELETE, keys=[self._keys.user_sessions(user_id)], args=[deadline]
        )
        if dropped == LATE or len(removed) < len(set(token_hashes)):
            raise TooLate(f"removing the sessions of user {user_id} came too late")

    async def touch(
        self, *, user_id: str, token_hash: str, at: datetime, unless_after: datetime
    ) -> Touched:
        """Sets last_seen_at to `at` unless it is already later than `unless_after`, and says
        whether it wrote and what last_seen_at now is (None when the session is gone or ended,
        or Redis was too slow to write it in time)."""
        answer = await eval_script(
            self._redis,
            _TOUCH,
            keys=[self._keys.session(user_id, token_hash)],
            args=[await self.deadline(), format_timestamp(at), format_timestamp(unless_after)],
        )
        if answer == 1:
            return Touched(True, at)
        if isinstance(answer, bytes | str):  # kept: written a moment ago by another request
            try:
                return Touched(False, _timestamp(_text(answer)))
            except ValueError:
                return Touched(False, None)
        return Touched(False, None)


async def ping(redis: RedisClient) -> None:
    await redis.ping()

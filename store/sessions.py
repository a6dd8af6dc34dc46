"""The session store: the Python API that login services and this service's CLI write with,
and that the API reads through. It keeps Postgres (the record) and Redis (what is active) in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from store import records
from store.active import ActiveSessions
from store.keys import Keys
from store.models import END_REASONS, EndReason, SessionRecord, to_utc_second, utcnow
from store.tokens import hash_token, is_well_formed, new_token, token_suffix

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(days=30)
# last_seen_at is written at most this often per session, however many requests it makes.
TOUCH_INTERVAL = timedelta(minutes=1)
MAX_USER_ID = 128
MAX_USER_AGENT = 1024


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# How far ahead of this machine's clock another machine's may be.
CLOCK_SKEW = timedelta(minutes=5)


class InvalidSession(ValueError):
    """A session to write was refused; the message says why, for the person who sent it."""


@dataclass(frozen=True, slots=True)
class NewSession:
    user_id: str
    ip: str
    user_agent: str = ""
    created_at: datetime | None = None  # default: now
    expires_at: datetime | None = None  # default: created_at + 30 days
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    # An existing token to keep (moving sessions from an older store); default: a new one.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Created:
    token: str
    record: SessionRecord


def _is_text(value: str) -> bool:
    """No NUL (Postgres text refuses it) and no lone surrogates (not encodable as UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _moment(name: str, value: datetime | None) -> datetime | None:
    """A given time in UTC to the second, checked to be in the range Postgres keeps as a time
    (asyncpg writes the year-1 minimum as -infinity)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidSession(f"{name} must be a datetime")
    moment = to_utc_second(value)
    if moment < EARLIEST:
        raise InvalidSession(f"{name} must not be before 1970")
    return moment


def prepare(new: NewSession, now: datetime) -> Created:
    """Checks a session to write and makes its token and record; raises InvalidSession."""
    user_id = new.user_id.strip() if isinstance(new.user_id, str) else ""
    if not user_id or len(user_id) > MAX_USER_ID:
        raise InvalidSession(f"user_id must be 1 to {MAX_USER_ID} characters")
    try:
        # A zone (`fe80::1%eth0`) means nothing off the machine that saw it, and Postgres's
        # inet drops it: keep the address alone, the same in both stores.
        ip = str(ipaddress.ip_address(str(new.ip).strip().split("%", 1)[0]))
    except ValueError:
        raise InvalidSession(f"ip is not an IPv4 or IPv6 address: {str(new.ip)[:64]!r}") from None
    if not isinstance(new.user_agent, str):
        raise InvalidSession("user_agent must be a string")
    if not _is_text(user_id) or not _is_text(new.user_agent):
        raise InvalidSession("user_id and user_agent must be UTF-8 text without NUL characters")
    created_at = _moment("created_at", new.created_at) or now
    try:
        expires_at = _moment("expires_at", new.expires_at) or created_at + DEFAULT_TTL
    except OverflowError:
        raise InvalidSession("expires_at is out of range") from None
    if expires_at <= created_at:
        raise InvalidSession("expires_at must be after created_at")
    ended_at = _moment("ended_at", new.ended_at)
    end_reason = new.end_reason
    if end_reason is not None and end_reason not in END_REASONS:
        raise InvalidSession(f"end_reason must be one of {', '.join(END_REASONS)}")
    if ended_at is not None:
        if ended_at < created_at:
            raise InvalidSession("ended_at must not be before created_at")
        if ended_at > expires_at:
            raise InvalidSession("ended_at must not be after expires_at")
        if ended_at > utcnow() + CLOCK_SKEW:
            raise InvalidSession("ended_at must not be in the future")
        end_reason = end_reason or "logout"
    elif end_reason is not None:
        raise InvalidSession("end_reason needs ended_at")
    token = new.token if new.token is not None else new_token()
    if not is_well_formed(token):
        raise InvalidSession("token must be 16 to 256 URL-safe characters")
    record = SessionRecord(
        id=str(uuid.uuid4()),
        user_id=user_id,
        token_hash=hash_token(token),
        token_suffix=token_suffix(token),
        created_at=created_at,
        expires_at=expires_at,
        client_ip=ip,
        user_agent=new.user_agent[:MAX_USER_AGENT],
        ended_at=ended_at,
        end_reason=end_reason,
    )
    return Created(token=token, record=record)


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.active = ActiveSessions(redis, keys)

    # -- reading -------------------------------------------------------------------------------

    async def authenticate(
        self, token: str, *, now: datetime | None = None
    ) -> SessionRecord | None:
        """The active session of a raw token, or None. Malformed tokens never reach Redis.

        Marks the session as seen now (at most once per TOUCH_INTERVAL).
        """
        if not is_well_formed(token):
            return None
        now = now or utcnow()
        record = await self.active.get(token_hash=hash_token(token), now=now)
        if record is not None and (
            record.last_seen_at is None or now - record.last_seen_at >= TOUCH_INTERVAL
        ):
            if await self.active.touch(
                token_hash=record.token_hash, at=now, unless_after=now - TOUCH_INTERVAL
            ):
                record = replace(record, last_seen_at=now)
        return record

    async def list_active_for_user(
        self, *, user_id: str, now: datetime | None = None
    ) -> list[SessionRecord]:
        return await self.active.list_for_user(user_id=user_id, now=now or utcnow())

    async def list_history_for_user(
        self,
        *,
        user_id: str,
        first: int,
        after: tuple[datetime, str] | None = None,
        now: datetime | None = None,
    ) -> tuple[list[SessionRecord], bool]:
        return await records.list_history_for_user(
            self.pool, user_id=user_id, now=now or utcnow(), first=first, after=after
        )

    async def get_for_user(self, *, user_id: str, session_id: str) -> SessionRecord | None:
        """One of the user's sessions (active or past) by id; None for anyone else's."""
        return await records.get_for_user(self.pool, user_id=user_id, session_id=session_id)

    async def timeline_for_user(
        self, *, user_id: str, limit: int
    ) -> list[tuple[str, datetime, str]]:
        """(id, created_at, client_ip) of the user's `limit` most recent sessions."""
        return await records.timeline_for_user(self.pool, user_id=user_id, limit=limit)

    async def taken_token_hashes(self, token_hashes: Sequence[str]) -> set[str]:
        return await records.taken_token_hashes(self.pool, token_hashes=token_hashes)

    # -- writing -------------------------------------------------------------------------------

    async def create(self, new: NewSession) -> Created:
        return (await self.create_many([new]))[0]

    async def create_many(self, batch: Sequence[NewSession]) -> list[Created]:
        """Validates every session of the batch, then writes them all: Postgres first (one COPY),
        then the still-active ones to Redis (one pipeline). Nothing is written if any is invalid;
        if Redis fails, the Postgres rows are removed again and the error is raised."""
        now = utcnow()
        created = [prepare(new, now) for new in batch]
        await self.write(created, now=now)
        return created

    async def write(self, created: Sequence[Created], *, now: datetime) -> None:
        """Writes prepared sessions (see create_many)."""
        if not created:
            return
        live = [
            c.record for c in created if c.record.ended_at is None and c.record.expires_at > now
        ]
        try:
            await records.create_many(self.pool, records=[c.record for c in created])
            if live:
                await self.active.put_many(records=live, now=now)
        except BaseException:
            # Cut off half-way (Redis failing, Ctrl-C, a lost connection): undo whatever part
            # landed. discard() goes by these rows' own ids, so after a COPY that failed whole
            # (a token already taken) it removes nothing of anyone else's.
            await asyncio.shield(self.discard(created))
            raise

    async def discard(self, created: Sequence[Created]) -> None:
        """Removes sessions just written whose tokens never reached anyone (a write or its
        report cut off half-way): their rows, and their Redis entries if any."""
        removed = set(await records.delete(self.pool, ids=[c.record.id for c in created]))
        with contextlib.suppress(Exception):
            for c in created:
                # Only entries of rows just removed: a token another writer holds stays theirs.
                if c.record.token_hash in removed:
                    await self.active.remove(
                        token_hash=c.record.token_hash, user_id=c.record.user_id
                    )

    async def end(self, token: str, *, reason: EndReason = "logout") -> SessionRecord | None:
        """Ends a session by its raw token; see end_by_hash."""
        return await self.end_by_hash(hash_token(token), reason=reason)

    async def end_by_hash(
        self, token_hash: str, *, reason: EndReason = "logout"
    ) -> SessionRecord | None:
        """Ends a session: recorded in Postgres first, then removed from Redis. Idempotent, so a
        failure between the two is mended by calling it again. None if no such session exists."""
        if reason not in ("logout", "revoked"):
            raise ValueError(f"a session is ended for logout or revoked, not {reason!r}")
        ended = await records.end(self.pool, token_hashes=[token_hash], reason=reason, at=utcnow())
        if ended:
            await self.active.remove(token_hash=token_hash, user_id=ended[0].user_id)
            self._log_ended(ended)
            return ended[0]
        # Active in Redis with no Postgres row (a writer skipped it): end it all the same.
        orphan = await self.active.get(token_hash=token_hash, now=utcnow())
        if orphan is None:
            return None
        await self.active.remove(token_hash=token_hash, user_id=orphan.user_id)
        log.info("ended session %s of user %s, found in Redis only", orphan.id, orphan.user_id)
        return replace(orphan, ended_at=utcnow(), end_reason=reason)

    async def revoke(self, *, user_id: str, session_id: str) -> SessionRecord | None:
        """Revokes one of the user's sessions by id. Idempotent: revoking a session that has
        already ended changes nothing and still answers it. None if the user has no such session.
        """
        record = await self.get_for_user(user_id=user_id, session_id=session_id)
        if record is None:
            return None
        return await self.end_by_hash(record.token_hash, reason="revoked") or record

    async def revoke_others(self, *, user_id: str, keep_session_id: str) -> int:
        """Revokes every active session of the user but one; returns how many it revoked."""
        hashes = [
            r.token_hash
            for r in await self.list_active_for_user(user_id=user_id)
            if r.id != keep_session_id
        ]
        if not hashes:
            return 0
        ended = await records.end(self.pool, token_hashes=hashes, reason="revoked", at=utcnow())
        await self.active.remove_many(token_hashes=hashes, user_id=user_id)
        self._log_ended(ended)
        return len(hashes)

    async def restore_active(self, *, batch: int = 1000) -> int:
        """Rewrites to Redis every session Postgres says is active but Redis lacks (after Redis
        lost its data); returns how many. Sessions Redis still has are left as they are."""
        now = utcnow()
        restored = 0
        async for rows in records.active_batches(self.pool, now=now, batch=batch):
            missing = await self.active.missing(token_hashes=[r.token_hash for r in rows])
            lost = [r for r in rows if r.token_hash in missing]
            if lost:
                await self.active.put_many(records=lost, now=now)
                # A session ended (or deleted) since this batch was read was removed from Redis
                # before it was written back: take it out again. (`end` writes Postgres before
                # Redis, so an end this check misses removes the key itself afterwards.)
                kept = await records.not_ended_among(
                    self.pool, token_hashes=[r.token_hash for r in lost]
                )
                for record in lost:
                    if record.token_hash not in kept:
                        await self.active.remove(
                            token_hash=record.token_hash, user_id=record.user_id
                        )
                restored += len(kept)
        if restored:
            log.warning("restored %d active sessions to Redis from Postgres", restored)
        return restored

    async def touch(self, token: str) -> SessionRecord | None:
        """Marks an active session as seen now (for login services); None if it is not active."""
        now = utcnow()
        record = await self.active.get(token_hash=hash_token(token), now=now)
        if record is None:
            return None
        if await self.active.touch(token_hash=record.token_hash, at=now, unless_after=now):
            record = replace(record, last_seen_at=now)
        return record

    @staticmethod
    def _log_ended(ended: Sequence[SessionRecord]) -> None:
        for record in ended:
            log.info(
                "ended session %s of user %s (%s)", record.id, record.user_id, record.end_reason
            )

    async def replace_user(self, *, user_id: str, batch: Sequence[NewSession]) -> list[Created]:
        """Forgets every session of the user and writes these instead, one replacement at a
        time (two running at once would leave both batches)."""
        async with records.user_lock(self.pool, user_id=user_id):
            await self.delete_user(user_id=user_id)
            return await self.create_many(batch)

    async def delete_user(self, *, user_id: str) -> int:
        """Forgets every session of a user, in both stores (used to reset the demo user)."""
        hashes = await records.delete_user(self.pool, user_id=user_id)
        await self.active.remove_user(user_id=user_id, token_hashes=hashes)
        return len(hashes)

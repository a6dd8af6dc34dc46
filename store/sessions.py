"""The session store: the Python API that login services and this service's CLI write with,
and that the API reads through. It keeps Postgres (the record) and Redis (what is active) in step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple, TypeVar

import asyncpg
from redis.exceptions import RedisError

from store import records
from store.active import Found, Mark, RedisSessions, TooLate
from store.client import RedisClient
from store.errors import StorageUnavailable, describe_outage, outage_of
from store.keys import Keys
from store.legacy import LegacySessions
from store.models import (
    END_REASONS,
    EPOCH,
    MAX_USER_AGENT,
    WRITER_END_REASONS,
    Actor,
    EndReason,
    HistoryRows,
    PagePosition,
    SessionRecord,
    TimelineEntry,
    canonical_session_id,
    to_utc_second,
    utcnow,
)
from store.replica import Replica
from store.tokens import hash_token, is_well_formed, new_token, token_suffix

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TTL = timedelta(days=30)
# The undo of a failed write tries this many times at most, with these pauses between, and
# starts no attempt later than this many Redis timeouts after it began (20 s by default).
UNDO_BACKOFF = (0.5, 1.0, 2.0, 4.0)
UNDO_TIMEOUTS = 4
# last_seen_at is written at most this often per session, however many requests it makes.
TOUCH_INTERVAL = timedelta(minutes=1)
# Seconds a request waits to record its session's activity. lastSeenAt is a courtesy: a Redis
# slow to take writes (paused, failing over) must neither fail nor hold up the page.
ACTIVITY_WAIT = 0.5
# Seconds a reader spends finishing ends that an earlier failure left half-done.
REPAIR_WAIT = 1.0
MAX_USER_ID = 128

# How far ahead of this machine's clock another machine's may be.
CLOCK_SKEW = timedelta(minutes=5)


class InvalidSession(ValueError):
    """A session to write was refused; the message says why, for the person who sent it."""


class NotUndone(Exception):
    """A write failed, and its undo could not remove all of it: these sessions (by token hash,
    sorted; `owners` maps each to its user id) may remain, active in Redis with no Postgres row
    (or in Postgres alone), until someone ends them
    (`sessions-api sessions end --user-id USER --token-hash HASH`). The write's own error is the
    cause."""

    def __init__(self, owners: Mapping[str, str]) -> None:
        super().__init__(f"{len(owners)} sessions of a failed write could not be removed")
        self.token_hashes = sorted(owners)
        self.owners = dict(owners)


@dataclass(frozen=True, slots=True)
class Restored:
    restored: int  # sessions written back to Redis
    finished: int  # ends that had failed half-way, finished


@dataclass(frozen=True, slots=True)
class Moved:
    moved: int  # sessions moved to the current Redis layout
    ended: int  # of those, ended because Postgres says they had ended
    skipped: list[str]  # token hashes left in the old layout (no user_id, or no expiry)


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
class IssuedSession:
    """A session with its token: what prepare() makes (not written yet) and create() returns
    (written). The token exists nowhere else: only its hash is stored."""

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
    if moment < EPOCH:
        raise InvalidSession(f"{name} must not be before 1970")
    return moment


def prepare(new: NewSession, now: datetime) -> IssuedSession:
    """Checks a session to write and makes its token and record; raises InvalidSession."""
    user_id = _checked_user_id(new.user_id)
    ip = _checked_ip(new.ip)
    if not isinstance(new.user_agent, str):
        raise InvalidSession("user_agent must be a string")
    if not _is_text(user_id) or not _is_text(new.user_agent):
        raise InvalidSession("user_id and user_agent must be UTF-8 text without NUL characters")
    times = _checked_times(new, now)
    token = new.token if new.token is not None else new_token()
    if not is_well_formed(token):
        raise InvalidSession("token must be 16 to 256 URL-safe characters")
    record = SessionRecord(
        id=str(uuid.uuid4()),
        user_id=user_id,
        token_hash=hash_token(token),
        token_suffix=token_suffix(token),
        created_at=times.created_at,
        expires_at=times.expires_at,
        client_ip=ip,
        user_agent=new.user_agent[:MAX_USER_AGENT],
        ended_at=times.ended_at,
        end_reason=times.end_reason,
    )
    return IssuedSession(token=token, record=record)


def _checked_user_id(value: object) -> str:
    user_id = value.strip() if isinstance(value, str) else ""
    if not user_id or len(user_id) > MAX_USER_ID:
        raise InvalidSession(f"user_id must be 1 to {MAX_USER_ID} characters")
    return user_id


def _checked_ip(value: object) -> str:
    try:
        # A zone (`fe80::1%eth0`) means nothing off the machine that saw it, and Postgres's
        # inet drops it: keep the address alone, the same in both stores.
        return str(ipaddress.ip_address(str(value).strip().split("%", 1)[0]))
    except ValueError:
        raise InvalidSession(f"ip is not an IPv4 or IPv6 address: {str(value)[:64]!r}") from None


class _Times(NamedTuple):
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: EndReason | None


def _checked_times(new: NewSession, now: datetime) -> _Times:
    """The session's times, with their defaults, and its end reason, checked together."""
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
    return _Times(created_at, expires_at, ended_at, end_reason)


class SessionStore:
    """With a `replica`, the reads that may lag a little (history, the signals' timeline) go to
    it while it is healthy (store/replica.py); every other Postgres read, and every write, goes
    to the primary `pool` (cookies and the active list are read from Redis, never Postgres)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: RedisClient,
        keys: Keys,
        *,
        replica: Replica | None = None,
        wait_replicas: int = 0,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.active = RedisSessions(redis, keys, wait_replicas=wait_replicas)
        self.replica = replica

    async def _lagging_read(self, read: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """`read` on the replica if it is healthy, else (or if it turns out to be down) on the
        primary."""
        replica = self.replica
        pool = replica.pool_for_read() if replica is not None else None
        if replica is None or pool is None:
            return await read(self.pool)
        try:
            return await read(pool)
        except Exception as exc:
            # A standby may also cancel a read that conflicts with what it replays (40001).
            conflict = isinstance(exc, asyncpg.exceptions.SerializationError)
            if not conflict and outage_of(exc) != "postgres":
                raise
            replica.failed(exc, down=not conflict)
        return await read(self.pool)

    # -- reading -------------------------------------------------------------------------------

    async def authenticate(
        self, token: str, *, now: datetime | None = None
    ) -> SessionRecord | None:
        """The active session of a raw token, or None; see sign_in."""
        found = await self.sign_in(token, now=now)
        return found.session if found is not None else None

    async def sign_in(self, token: str, *, now: datetime | None = None) -> Found | None:
        """The active session of a raw token, with its user's sessions as Redis held them at the
        same moment (for `list_active_for_user(listed=…)`), or None. Malformed tokens never
        reach Redis.

        Marks the session as seen now (at most once per TOUCH_INTERVAL).
        """
        if not is_well_formed(token):
            return None
        now = now or utcnow()
        found = await self.active.find(token_hash=hash_token(token), now=now)
        if found is None:
            return None
        record = found.session
        if record.last_seen_at is None or now - record.last_seen_at >= TOUCH_INTERVAL:
            # Written now, or a moment ago by a request of the same session: either way the
            # session and its place in the list show what Redis now holds.
            seen_at = await self._record_activity(record, now=now)
            if seen_at is not None and seen_at != record.last_seen_at:
                seen = replace(record, last_seen_at=seen_at)
                listed = [seen if r.token_hash == record.token_hash else r for r in found.listed]
                found = Found(seen, listed)
        return found

    async def _record_activity(self, record: SessionRecord, *, now: datetime) -> datetime | None:
        """Sets the session's last_seen_at (see ACTIVITY_WAIT) unless a moment ago; returns it
        as Redis now holds it, or None when that is not known."""
        try:
            async with asyncio.timeout(ACTIVITY_WAIT):
                touched = await self.active.touch(
                    user_id=record.user_id,
                    token_hash=record.token_hash,
                    at=now,
                    unless_after=now - TOUCH_INTERVAL,
                )
                return touched.last_seen_at
        except (TimeoutError, RedisError, StorageUnavailable) as exc:
            why = describe_outage(exc) if str(exc) else f"no answer within {ACTIVITY_WAIT} s"
            log.warning("redis: activity of session %s not recorded: %s", record.id, why)
            return None

    async def list_active_for_user(
        self,
        *,
        user_id: str,
        now: datetime | None = None,
        listed: Sequence[SessionRecord] | None = None,
    ) -> list[SessionRecord]:
        """The user's active sessions, newest first: `listed` (what sign_in read with the cookie)
        or a fresh read. Finishes on the way the ends of theirs that an earlier failure left
        half-done (marked in Redis, not yet recorded in Postgres), so a session revoked half-way
        moves to history at the user's next look, not only at the next `sessions restore`."""
        if listed is None:
            listed = await self.active.list_for_user(
                user_id=user_id, now=now or utcnow(), include_ended=True
            )
        else:
            listed = [r for r in listed if r.user_id == user_id]  # never another user's
        # The listing already read each mark: no second trip to Redis for them.
        marked = {
            r.token_hash: Mark(r.token_hash, r.user_id, r.ended_at, r.end_reason, r)
            for r in listed
            if r.ended_at is not None and r.end_reason is not None
        }
        if marked:
            await self._finish_quietly(marked)
        return [r for r in listed if r.ended_at is None]

    async def _finish_quietly(self, marked: Mapping[str, Mark]) -> None:
        """Finishes half-done ends if storage allows it within REPAIR_WAIT; else leaves them
        for the next look (the reader's answer does not depend on it)."""
        try:
            async with asyncio.timeout(REPAIR_WAIT):
                await self._finish_ends(list(marked), marked, at=utcnow(), reason="revoked")
        except Exception as exc:
            if not isinstance(exc, TimeoutError) and outage_of(exc) is None:
                raise
            why = describe_outage(exc) if str(exc) else f"no answer within {REPAIR_WAIT} s"
            log.warning("%d half-done ends left for later: %s", len(marked), why)

    async def list_history_for_user(
        self,
        *,
        user_id: str,
        first: int,
        after: PagePosition | None = None,
        now: datetime | None = None,
    ) -> HistoryRows:
        """A page of the user's past sessions; from the replica when there is a healthy one
        (a session that ended in the last DATABASE_REPLICA_MAX_LAG seconds may be missing yet)."""
        moment = now or utcnow()
        return await self._lagging_read(
            lambda pool: records.list_history_for_user(
                pool, user_id=user_id, now=moment, first=first, after=after
            )
        )

    async def get_for_user(self, *, user_id: str, session_id: str) -> SessionRecord | None:
        """One of the user's sessions (active or past) by id; None for anyone else's.

        Always from the primary: revoking goes by it, and must find a session created a moment
        ago (a replica behind would answer "no such session")."""
        return await records.get_for_user(self.pool, user_id=user_id, session_id=session_id)

    async def find(self, session_id: str) -> SessionRecord | None:
        """A session by id, whoever's it is (the admin API), active or past; an active one as
        Redis holds it (with its lastSeenAt). From the primary, as get_for_user."""
        record = await records.get_by_id(self.pool, session_id=session_id)
        if record is None or record.ended_at is not None:
            return record
        for active in await self.list_active_for_user(user_id=record.user_id):
            if active.id == record.id:
                return active
        return record

    async def revoke_by_id(self, session_id: str, *, actor: Actor) -> SessionRecord | None:
        """Revokes a session by id, whoever's it is (the admin API); None if there is none.
        Idempotent, as revoke."""
        record = await records.get_by_id(self.pool, session_id=session_id)
        if record is None:
            return None
        return await self.revoke(user_id=record.user_id, session_id=record.id, actor=actor)

    async def timeline_for_user(self, *, user_id: str, limit: int) -> list[TimelineEntry]:
        """The user's `limit` most recent sessions, active or past, newest first; from the
        replica when there is a healthy one (signals allow a session missing from its own
        timeline, see sessions_rules/signals.py)."""
        return await self._lagging_read(
            lambda pool: records.timeline_for_user(pool, user_id=user_id, limit=limit)
        )

    async def taken_token_hashes(self, token_hashes: Sequence[str]) -> set[str]:
        """Always from the primary: writers check tokens before writing, and a token written a
        moment ago must count as taken."""
        return await records.taken_token_hashes(self.pool, token_hashes=token_hashes)

    # -- writing -------------------------------------------------------------------------------

    async def create(self, new: NewSession) -> IssuedSession:
        return (await self.create_many([new]))[0]

    async def create_many(self, batch: Sequence[NewSession]) -> list[IssuedSession]:
        """Validates every session of the batch, then writes them all: Postgres first (one COPY),
        then the still-active ones to Redis (one pipeline). Nothing is written if any is invalid;
        if Redis fails, the Postgres rows are removed again and the error is raised."""
        now = utcnow()
        issued = [prepare(new, now) for new in batch]
        await self.write(issued, now=now)
        return issued

    async def write(self, issued: Sequence[IssuedSession], *, now: datetime) -> None:
        """Writes prepared sessions (see create_many). If the write fails, it is undone before
        the error is raised; what the undo could not remove is named by a NotUndone error."""
        if not issued:
            return
        live = [c.record for c in issued if c.record.ended_at is None and c.record.expires_at > now]
        sent = False  # whether anything may have reached Redis
        try:
            await records.create_many(self.pool, records=[c.record for c in issued], now=now)
            if live:
                # Past this deadline the writes do nothing, so a pipeline that a hung Redis runs
                # late cannot bring back what the undo below removed.
                deadline = await self.active.deadline()
                sent = True
                await self.active.put_many(records=live, now=now, deadline=deadline)
        except BaseException as exc:
            # Cut off half-way (Redis failing, Ctrl-C, a lost connection): undo whatever part
            # landed. The undo goes by these rows' own ids, so after a COPY that failed whole
            # (a token already taken) it removes nothing of anyone else's.
            left = await asyncio.shield(self._undo(issued, redis=sent))
            if left:
                if isinstance(exc, Exception):
                    raise NotUndone(_owners(issued, left)) from exc
                for token_hash in left:  # interrupted: nobody will catch a NotUndone
                    log.error("session %s may remain in Redis with no Postgres row", token_hash)
            raise

    async def discard(self, issued: Sequence[IssuedSession]) -> None:
        """Removes sessions just written whose tokens never reached anyone (a write or its
        report cut off half-way): their rows, and their Redis entries. Raises NotUndone naming
        what it could not remove."""
        left = await self._undo(issued, redis=True)
        if left:
            raise NotUndone(_owners(issued, left))

    async def _undo(self, issued: Sequence[IssuedSession], *, redis: bool) -> list[str]:
        """Removes these new sessions' rows, then each of their Redis entries (with `redis`),
        retrying what fails: after the pauses of UNDO_BACKOFF, and no attempt begins later than
        UNDO_TIMEOUTS Redis timeouts after the first. Returns the token hashes of the sessions
        it could not be sure it removed."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + UNDO_TIMEOUTS * self.active.timeout
        rows_removed: list[str] | None = None
        pending: dict[str, str] = {}  # token hash -> user id, still to remove from Redis
        users = {c.record.token_hash: c.record.user_id for c in issued}
        for attempt, pause in enumerate((0.0, *UNDO_BACKOFF)):
            if attempt and loop.time() + pause > give_up:
                break
            await asyncio.sleep(pause)
            try:
                if rows_removed is None:
                    rows_removed = await records.delete(
                        self.pool, ids=[c.record.id for c in issued]
                    )
                    # Only entries of rows just removed: a token another writer holds stays
                    # theirs.
                    if redis:
                        pending = {h: users[h] for h in rows_removed}
                for token_hash in await self.active.remove_many(sessions=pending):
                    del pending[token_hash]
            except Exception as exc:  # any failure: try again, then name what is left
                log.warning("undoing a failed write, attempt %d: %r", attempt + 1, exc)
            if rows_removed is not None and not pending:
                return []
        if rows_removed is None:
            return sorted(users)  # the rows may be there (and their Redis entries)
        return sorted(pending)

    async def end(
        self, token: str, *, reason: EndReason = "logout", actor: Actor | None = None
    ) -> SessionRecord | None:
        """Ends a session by its raw token; see end_by_hash."""
        return await self.end_by_hash(hash_token(token), reason=reason, actor=actor)

    async def end_by_hash(
        self,
        token_hash: str,
        *,
        reason: EndReason = "logout",
        user_id: str | None = None,
        actor: Actor | None = None,
    ) -> SessionRecord | None:
        """Ends a session, in three steps that each leave a state no reader takes for active:
        1. Redis: the session is marked ended, so it stops working at once. If Redis does not
           answer, nothing has changed (the mark cannot run late).
        2. Postgres: the end is recorded (with the mark's time and reason).
        3. Redis: the marked entry is removed.
        Idempotent: calling it again finishes an end that failed half-way. None if no such
        session exists.

        The session's user is found from its token's pointer in Redis, else its Postgres row;
        `user_id` names it for a session that has neither (a failed write's leftover). With an
        `actor`, the end is in the audit trail (README, "For login services and support")."""
        if reason not in WRITER_END_REASONS:
            raise ValueError(f"a session is ended for logout or revoked, not {reason!r}")
        owners = {token_hash: user_id} if user_id is not None else await self._owners([token_hash])
        if not owners:
            return None
        ended = await self._end_many(owners, reason=reason, actor=actor)
        return ended[0] if ended else None

    async def _owners(self, token_hashes: Sequence[str]) -> dict[str, str]:
        """Whose sessions these are (token hash -> user id): Redis's pointers, which name the
        user a token signs in as, then Postgres for those without one."""
        owners = await self.active.owners(token_hashes)
        rest = [h for h in token_hashes if h not in owners]
        if rest:
            owners.update(await records.owners(self.pool, token_hashes=rest))
        return owners

    async def _end_many(
        self, sessions: Mapping[str, str], *, reason: EndReason, actor: Actor | None = None
    ) -> list[SessionRecord]:
        """Ends sessions (token hash -> user id) as end_by_hash does; returns those that
        existed, as ended."""
        now = utcnow()
        marks = await self.active.mark_ended(sessions=sessions, at=now, reason=reason)
        return await self._finish_ends(list(sessions), marks, at=now, reason=reason, actor=actor)

    async def _finish_ends(
        self,
        token_hashes: Sequence[str],
        marks: Mapping[str, Mark],
        *,
        at: datetime,
        reason: EndReason,
        actor: Actor | None = None,
    ) -> list[SessionRecord]:
        """Steps 2 and 3 of an end, for sessions marked (or absent) in Redis."""
        if marks:  # a mark a failover could still lose is not an end yet (REDIS_WAIT_REPLICAS)
            await self.active.replicated()
        rows = await self._record_ends(token_hashes, marks, at=at, reason=reason, actor=actor)
        ended: list[SessionRecord] = []
        entries: dict[str, str] = {}  # token hash -> user id, of the Redis entries to remove
        for token_hash in token_hashes:
            mark = marks.get(token_hash)
            row = rows.get(token_hash)
            if row is not None:
                ended.append(row)
            elif mark is not None and mark.record is not None:
                # Active in Redis with no Postgres row (a writer skipped it): ended all the same.
                ended.append(
                    replace(mark.record, ended_at=mark.ended_at, end_reason=mark.end_reason)
                )
                log.info(
                    "ended session %s of user %s, found in Redis only", mark.record.id, mark.user_id
                )
            user_id = mark.user_id if mark and mark.user_id else row.user_id if row else None
            if user_id is not None:
                entries[token_hash] = user_id
        await self._remove_ended(entries)
        return ended

    async def _record_ends(
        self,
        token_hashes: Sequence[str],
        marks: Mapping[str, Mark],
        *,
        at: datetime,
        reason: EndReason,
        actor: Actor | None = None,
    ) -> dict[str, SessionRecord]:
        """Step 2: the ends recorded in Postgres; the stored rows by token hash."""
        # A mark already there (an end that failed half-way) keeps its own time and reason.
        groups: dict[tuple[datetime, EndReason], list[str]] = {}
        for token_hash in token_hashes:
            mark = marks.get(token_hash)
            key = (mark.ended_at, mark.end_reason) if mark else (at, reason)
            groups.setdefault(key, []).append(token_hash)
        rows: dict[str, SessionRecord] = {}
        for (when, why), hashes in groups.items():
            ended = await records.end(
                self.pool, token_hashes=hashes, reason=why, at=when, actor=actor
            )
            for stored in ended:
                rows[stored.token_hash] = stored
        self._log_ended(list(rows.values()))
        return rows

    async def _remove_ended(self, entries: Mapping[str, str]) -> None:
        """Step 3: the marked entries removed from Redis, as far as Redis lets us."""
        try:
            removed = await self.active.remove_many(sessions=entries)
        except Exception as exc:
            removed = set()
            log.warning("ended sessions stay marked ended in Redis until removed: %r", exc)
        if len(removed) < len(entries):
            # The end is done: marked entries are not active, and expire with their session.
            log.warning(
                "%d ended sessions stay marked ended in Redis until retried or expired",
                len(entries) - len(removed),
            )

    async def revoke(
        self, *, user_id: str, session_id: str, actor: Actor | None = None
    ) -> SessionRecord | None:
        """Revokes one of the user's sessions by id. Idempotent: revoking a session that has
        already ended changes nothing and still answers it. None if the user has no such session.
        """
        record = await self.get_for_user(user_id=user_id, session_id=session_id)
        if record is None:
            # One the user sees in Redis with no Postgres row (a writer skipped it, or an
            # import's undo could not remove it) can be revoked all the same.
            wanted = canonical_session_id(session_id)
            active = await self.list_active_for_user(user_id=user_id)
            record = next((r for r in active if r.id == wanted), None)
            if record is None:
                return None
        ended = await self._end_many({record.token_hash: user_id}, reason="revoked", actor=actor)
        return ended[0] if ended else record

    async def revoke_others(
        self, *, user_id: str, keep_session_id: str, actor: Actor | None = None
    ) -> int:
        """Revokes every active session of the user but one; returns how many it revoked."""
        return await self.end_all(
            user_id=user_id, reason="revoked", except_session_id=keep_session_id, actor=actor
        )

    async def end_all(
        self,
        *,
        user_id: str,
        reason: EndReason = "revoked",
        except_session_id: str | None = None,
        actor: Actor | None = None,
    ) -> int:
        """Ends every active session of the user ("sign out everywhere"), but the one with
        `except_session_id` if given; returns how many it ended. Also finishes the ends of the
        user's sessions that an earlier failure left marked ended. Every token of the user stops
        working at once, in every process (step 1 of end_by_hash)."""
        if reason not in WRITER_END_REASONS:
            raise ValueError(f"a session is ended for logout or revoked, not {reason!r}")
        keep = canonical_session_id(except_session_id) if except_session_id else None
        targets = [
            r
            for r in await self.active.list_for_user(
                user_id=user_id, now=utcnow(), include_ended=True
            )
            if r.id != keep
        ]
        if not targets:
            return 0
        await self._end_many({r.token_hash: user_id for r in targets}, reason=reason, actor=actor)
        return sum(1 for r in targets if r.ended_at is None)

    async def restore_active(
        self, *, batch: int = 1000, progress: Callable[[int, int, int], None] | None = None
    ) -> Restored:
        """Rewrites to Redis every session Postgres says is active but Redis lacks (after Redis
        lost its data). Sessions Redis still has are left as they are, except those it holds
        marked ended (an end that failed half-way): their ends are finished. `progress` hears
        after each batch: sessions checked in it, restored so far, ends finished so far."""
        now = utcnow()
        restored = finished = 0
        # The primary alone, here and below: Redis is rebuilt from the latest record.
        async for rows in records.active_batches(self.pool, now=now, batch=batch):
            missing, marked = await self.active.states(
                sessions={r.token_hash: r.user_id for r in rows}
            )
            lost = [r for r in rows if r.token_hash in missing]
            if lost:
                await self.active.put_many(records=lost, now=now)
                # A session ended (or deleted) since this batch was read was removed from Redis
                # before it was written back: take it out again. (`end` marks Redis first, but
                # an end that found no entry to mark writes only Postgres.)
                kept = await records.not_ended_among(
                    self.pool, token_hashes=[r.token_hash for r in lost]
                )
                gone = {r.token_hash: r.user_id for r in lost if r.token_hash not in kept}
                if len(await self.active.remove_many(sessions=gone)) < len(gone):
                    raise TooLate("removing sessions ended during the restore came too late")
                restored += len(kept)
            if marked:
                hashes = list(marked)
                finished += len(await self._finish_ends(hashes, marked, at=now, reason="revoked"))
            if progress is not None:
                progress(len(rows), restored, finished)
        if restored:
            log.warning("restored %d active sessions to Redis from Postgres", restored)
        if finished:
            log.warning("finished %d ends that had failed half-way", finished)
        return Restored(restored=restored, finished=finished)

    async def move_legacy_redis(self, *, batch: int = 1000) -> AsyncIterator[Moved]:
        """Moves the sessions Redis holds in the layout before hash tags (store/legacy.py),
        `batch` at a time, and yields what each batch did. A moved session whose Postgres row
        says it ended (an end recorded by a writer of the old layout) is ended here too."""
        legacy = LegacySessions(self.redis, self.keys)
        async for done in legacy.batches(now=utcnow(), size=batch):
            ended = await records.ended_among(self.pool, token_hashes=list(done.moved))
            if ended:
                await self._end_many({h: done.moved[h] for h in ended}, reason="revoked")
            yield Moved(moved=len(done.moved), ended=len(ended), skipped=done.skipped)

    async def record_expiries(self) -> int:
        """Records session.expired events for the sessions that expired, unended, since the
        last time (store/expiry.py runs it); returns how many."""
        return await records.sweep_expiries(self.pool)

    async def events_after(self, seq: int, *, limit: int = 1000) -> list[records.StoredEvent]:
        """Session events after the one numbered `seq` (0: from the first), in order."""
        return await records.events_after(self.pool, seq=seq, limit=limit)

    async def last_event_seq(self) -> int:
        """The number of the newest session event (0 if none)."""
        return await records.last_event_seq(self.pool)

    async def events_numbered(self, seqs: list[int]) -> list[records.StoredEvent]:
        """The session events with these numbers, in order (those pruned since are gone)."""
        return await records.events_numbered(self.pool, seqs)

    async def is_active(self, token: str) -> bool:
        """Whether the token's session is active; unlike sign_in, records no activity."""
        if not is_well_formed(token):
            return False
        return await self.active.get(token_hash=hash_token(token), now=utcnow()) is not None

    async def touch(self, token: str) -> SessionRecord | None:
        """Marks an active session as seen now (for login services); None if it is not active."""
        now = utcnow()
        record = await self.active.get(token_hash=hash_token(token), now=now)
        if record is None:
            return None
        touched = await self.active.touch(
            user_id=record.user_id, token_hash=record.token_hash, at=now, unless_after=now
        )
        if touched.last_seen_at is not None:
            record = replace(record, last_seen_at=touched.last_seen_at)
        return record

    @staticmethod
    def _log_ended(ended: Sequence[SessionRecord]) -> None:
        for record in ended:
            log.info(
                "ended session %s of user %s (%s)", record.id, record.user_id, record.end_reason
            )

    async def replace_user(
        self, *, user_id: str, batch: Sequence[NewSession]
    ) -> list[IssuedSession]:
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

    async def prune_history(self, *, before: datetime, limit: int) -> int:
        """Deletes up to `limit` of the oldest past sessions that ended before `before`; returns
        how many. `before` must be past by more than CLOCK_SKEW, so that a session this clock
        calls expired has expired on Redis's clock too. Redis is left alone: no past session is
        active there (an end removes its entry, or leaves it marked ended until it expires; an
        expiry drops it)."""
        if before > utcnow() - CLOCK_SKEW:
            raise ValueError(
                f"only sessions that ended over {CLOCK_SKEW.seconds // 60} minutes ago are pruned"
            )
        return await records.delete_history_before(self.pool, before=before, limit=limit)


def _owners(issued: Sequence[IssuedSession], token_hashes: Sequence[str]) -> dict[str, str]:
    users = {c.record.token_hash: c.record.user_id for c in issued}
    return {h: users[h] for h in token_hashes}

"""Postgres: the record of every session ever created. The only module that speaks SQL
(besides the migrations themselves).

Every call here waits a bounded time (`Bounds`, set by `open_pool` from the settings): for a
pooled connection, opening it included, then for each statement. A caller is never held up by
handing a connection back after a failure: asyncpg would first wait for the cancelled statement,
which a hung server never confirms. A wait that runs out raises StorageUnavailable("postgres").
Reads (and the idempotent `end`) whose connection turns out to be dropped, as after a Postgres
restart, are retried once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from store import models
from store.errors import StorageUnavailable, outage_of
from store.memo import memo_of_short_texts
from store.models import EndReason, SessionRecord, canonical_session_id

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Bounds:
    """Seconds a call may wait: for a pooled connection (opening one included), and for each
    statement (the pool's command_timeout)."""

    acquire: float = 2.0
    statement: float = 5.0


class Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg has no type hints
    """An asyncpg pool that carries the bounds of every call made on it here."""

    bounds = Bounds()


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that resets its session state on release only when it may hold some.

    asyncpg's reset (advisory locks, cursors, LISTEN, settings) is a round trip on every release.
    Of those, only `user_lock` takes anything that outlives a statement here (cursors close with
    their transaction, which the pool rolls back anyway): it marks the connection until its lock
    is released, so a connection handed back with the lock still held is reset in full.
    """

    _holds_session_state = False

    def hold_session_state(self, held: bool) -> None:
        self._holds_session_state = held

    def get_reset_query(self) -> str:
        return str(super().get_reset_query()) if self._holds_session_state else ""


def _hold_session_state(conn: Any, held: bool) -> None:
    # `conn` is the pool's proxy, which hands on what asyncpg's own class lacks; a pool not
    # opened by open_pool resets every connection anyway.
    mark = getattr(conn, "hold_session_state", None)
    if mark is not None:
        mark(held)


async def open_pool(
    dsn: str,
    *,
    size: int,
    connect_timeout: float,
    acquire_timeout: float,
    statement_timeout: float,
) -> Pool:
    """A pool of up to `size` connections, opened when needed: none at start, so the service
    starts (and /readyz says so) while Postgres is down."""
    pool = Pool(
        dsn,
        min_size=0,
        max_size=size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=Connection,
        record_class=asyncpg.Record,
        timeout=connect_timeout,
        command_timeout=statement_timeout,
    )
    pool.bounds = Bounds(acquire=acquire_timeout, statement=statement_timeout)
    await pool
    return pool


async def close_pool(pool: asyncpg.Pool) -> None:
    """Closes the pool's connections politely if Postgres answers in time, else at once."""
    try:
        await asyncio.wait_for(pool.close(), _bounds(pool).statement)
    except TimeoutError:
        pool.terminate()


def _bounds(pool: asyncpg.Pool) -> Bounds:
    bounds = getattr(pool, "bounds", None)
    return bounds if isinstance(bounds, Bounds) else Bounds()


class _Dropped(StorageUnavailable):
    """The connection died under a statement: a restart, a terminated backend."""


# Connections being handed back in the background; kept so that the tasks are not collected.
_HANDING_BACK: set[asyncio.Future[None]] = set()


def _hand_back(pool: asyncpg.Pool, conn: Any) -> None:
    """Releases a connection without waiting: the pool waits for a cancelled statement and
    resets the connection within the acquire bound, or else closes it."""
    task = asyncio.ensure_future(pool.release(conn))
    _HANDING_BACK.add(task)
    task.add_done_callback(_handed_back)


def _handed_back(task: asyncio.Future[None]) -> None:
    _HANDING_BACK.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # The pool has closed that connection; the next call opens another.
        log.debug("postgres: a connection could not be reset: %r", task.exception())


def _is_closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # closed, and already given back to the pool by asyncpg
        return True


async def _acquire(pool: asyncpg.Pool, bounds: Bounds) -> Any:
    try:
        return await pool.acquire(timeout=bounds.acquire)
    except TimeoutError:
        raise StorageUnavailable("postgres", f"no connection within {bounds.acquire:g} s") from None
    except OSError as exc:  # refused, unreachable: asyncpg passes these on as they are
        raise StorageUnavailable("postgres", f"cannot connect: {exc}") from exc


@asynccontextmanager
async def _connection(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """A pooled connection, within the pool's bounds, for one or several statements."""
    bounds = _bounds(pool)
    conn = await _acquire(pool, bounds)
    try:
        yield conn
    except BaseException as exc:
        dropped = _is_closed(conn) and outage_of(exc) == "postgres"
        _hand_back(pool, conn)
        if isinstance(exc, TimeoutError):
            raise StorageUnavailable(
                "postgres", f"no answer within {bounds.statement:g} s"
            ) from exc
        if dropped and isinstance(exc, Exception):
            raise _Dropped("postgres", f"connection lost: {exc}") from exc
        raise
    try:
        await pool.release(conn)
    except Exception as exc:  # the pool closed the connection instead; the work was done
        log.debug("postgres: a connection could not be reset: %r", exc)


async def _call(
    pool: asyncpg.Pool, work: Callable[[Any], Awaitable[T]], *, retry: bool = False
) -> T:
    """Runs `work` on a pooled connection. With `retry` (for work that may run twice: reads,
    idempotent writes), a dropped connection is replaced once."""
    try:
        async with _connection(pool) as conn:
            return await work(conn)
    except _Dropped as exc:
        if not retry:
            raise
        # One dropped connection usually means Postgres restarted: renew every pooled one.
        log.info("postgres: %s; trying once more on a fresh connection", exc.why)
        await pool.expire_connections()
    async with _connection(pool) as conn:
        return await work(conn)


_COLUMNS = (
    "id", "user_id", "token_hash", "token_suffix", "created_at", "expires_at",
    "ended_at", "end_reason", "client_ip", "user_agent",
)  # fmt: skip
# What _record reads, in its order. The id and address come as Postgres writes them: decoding
# a uuid or an inet into Python objects, only to write them as text again, costs more per row
# than the rest of it.
_SELECT_LIST = (
    "id::text, user_id, token_hash, token_suffix, created_at, expires_at, ended_at, end_reason, "
    "abbrev(client_ip) AS client_ip, user_agent"
)


# A session's stored fields as an event carries them (docs/DATA.md): times in UTC to the
# second with a Z, the address as Postgres writes it. Never the token hash.
EVENT_DATA = """jsonb_build_object(
    'id', s.id::text, 'user_id', s.user_id, 'token_suffix', s.token_suffix,
    'created_at', to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'expires_at', to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'ended_at', to_char(s.ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'end_reason', s.end_reason, 'client_ip', host(s.client_ip), 'user_agent', s.user_agent)"""

# $1: the new rows' ids; $2: the writer's "now".
_CREATED_EVENTS = f"""
INSERT INTO session_events (id, type, session_id, user_id, occurred_at, data)
SELECT gen_random_uuid(), 'session.created', s.id, s.user_id, $2, {EVENT_DATA}
  FROM sessions s
 WHERE s.id = ANY($1::uuid[]) AND s.ended_at IS NULL AND s.expires_at > $2
"""  # noqa: S608

# $1: token hashes; $2: the reason; $3: when. The rows are locked first (`old`), so of two
# writers ending one session at once, the second sees the first's end and adds no event.
_END = f"""
WITH old AS (
    -- In id order, as a user's deletion locks them: two writers never wait on each other.
    SELECT id, ended_at FROM sessions WHERE token_hash = ANY($1::text[]) ORDER BY id FOR UPDATE
), s AS (
    UPDATE sessions
       SET ended_at = COALESCE(sessions.ended_at,
                               GREATEST(created_at, LEAST($3, expires_at))),
           end_reason = COALESCE(end_reason,
                                 CASE WHEN expires_at <= $3 THEN 'expired' ELSE $2 END)
      FROM old
     WHERE sessions.id = old.id
 RETURNING sessions.*, old.ended_at IS NULL AS ended_now
), events AS (
    INSERT INTO session_events (id, type, session_id, user_id, occurred_at, data)
    SELECT gen_random_uuid(),
           CASE s.end_reason WHEN 'logout' THEN 'session.ended'
                             ELSE 'session.' || s.end_reason END,
           s.id, s.user_id, s.ended_at,
           CASE WHEN $4::jsonb IS NULL THEN {EVENT_DATA}
                ELSE {EVENT_DATA} || jsonb_build_object('actor', jsonb_strip_nulls(
                    jsonb_build_object('type', $4::jsonb->>'type', 'name', $4::jsonb->>'name')))
           END
      FROM s
     WHERE s.ended_now
    ON CONFLICT DO NOTHING
), audit AS (
    INSERT INTO audit_log (actor_type, actor_name, actor_key_id, action, target_user_id,
                           target_session_id, request_id, client_addr)
    SELECT $4::jsonb->>'type', $4::jsonb->>'name', ($4::jsonb->>'key_id')::uuid,
           CASE s.end_reason WHEN 'logout' THEN 'session.ended'
                             ELSE 'session.' || s.end_reason END,
           s.user_id, s.id, $4::jsonb->>'request_id', $4::jsonb->>'client_addr'
      FROM s
     WHERE s.ended_now AND $4::jsonb IS NOT NULL
)
SELECT {_SELECT_LIST} FROM s
"""  # noqa: S608


def python_ip(text: str) -> str:
    """An address as Postgres writes it (`abbrev(inet)`: no /32 or /128) in Python's spelling,
    which the rest of the service uses: they differ only for IPv6 with an embedded IPv4 address,
    which Postgres writes dotted (`::ffff:1.2.3.4`) and Python in hex (`::ffff:102:304`)."""
    if ":" not in text or "." not in text:
        return text
    return _respelt(text)


@memo_of_short_texts(entries=4096, max_text=64)
def _respelt(text: str) -> str:
    if "/" in text:
        return str(ipaddress.ip_interface(text))
    return str(ipaddress.ip_address(text))


def _record(row: Any) -> SessionRecord:
    """A SessionRecord of a row selected with _SELECT_LIST (by position: by name costs more)."""
    return SessionRecord(
        row[0], row[1], row[2], row[3], row[4], row[5],
        client_ip=python_ip(row[8]),
        user_agent=row[9],
        ended_at=row[6],
        end_reason=row[7],
    )  # fmt: skip


async def create_many(
    pool: asyncpg.Pool, *, records: Sequence[SessionRecord], now: datetime
) -> None:
    """Inserts the records in one COPY (thousands of rows a second) and, in the same
    transaction, a session.created event for each that is active at `now` (not ended, not
    expired: a row written as history is not a sign-in)."""
    rows = [
        (
            uuid.UUID(r.id),
            r.user_id,
            r.token_hash,
            r.token_suffix,
            r.created_at,
            r.expires_at,
            r.ended_at,
            r.end_reason,
            r.client_ip,
            r.user_agent,
        )
        for r in records
    ]
    async with _connection(pool) as conn, conn.transaction():
        await conn.copy_records_to_table("sessions", records=rows, columns=_COLUMNS)
        await conn.execute(_CREATED_EVENTS, [row[0] for row in rows], now)


async def delete(pool: asyncpg.Pool, *, ids: Sequence[str]) -> list[str]:
    """Undoes create_many (by the new rows' own ids, so another writer's row is never touched);
    returns the token hashes of the rows it removed."""
    uuids = [uuid.UUID(i) for i in ids]
    # Never retried: a DELETE that landed before its connection dropped would return nothing
    # the second time, and its caller would not know which Redis entries to remove.
    rows = await _call(
        pool,
        lambda c: c.fetch(
            "DELETE FROM sessions WHERE id = ANY($1::uuid[]) RETURNING token_hash", uuids
        ),
    )
    return [r["token_hash"] for r in rows]


async def taken_token_hashes(pool: asyncpg.Pool, *, token_hashes: Sequence[str]) -> set[str]:
    """Which of these token hashes some stored session already has."""
    return set(await owners(pool, token_hashes=token_hashes))


async def owners(pool: asyncpg.Pool, *, token_hashes: Sequence[str]) -> dict[str, str]:
    """The user ids of the stored sessions with these token hashes (token hash -> user id)."""
    if not token_hashes:
        return {}
    rows = await _call(
        pool,
        lambda c: c.fetch(
            "SELECT token_hash, user_id FROM sessions WHERE token_hash = ANY($1::text[])",
            list(token_hashes),
        ),
        retry=True,
    )
    return {r["token_hash"]: r["user_id"] for r in rows}


async def get_by_id(pool: asyncpg.Pool, *, session_id: str) -> SessionRecord | None:
    """One session by its public id, whoever's it is (the admin API)."""
    return await get_for_user(pool, user_id=None, session_id=session_id)


async def get_for_user(
    pool: asyncpg.Pool, *, user_id: str | None, session_id: str
) -> SessionRecord | None:
    """One session by its public id, only if it is this user's (any user's with None)."""
    key = canonical_session_id(session_id)
    if key is None:
        return None
    row = await _call(
        pool,
        lambda c: c.fetchrow(
            f"""SELECT {_SELECT_LIST} FROM sessions
                 WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)""",  # noqa: S608
            uuid.UUID(key),
            user_id,
        ),
        retry=True,
    )
    return _record(row) if row else None


async def end(
    pool: asyncpg.Pool,
    *,
    token_hashes: Sequence[str],
    reason: EndReason,
    at: datetime,
    actor: models.Actor | None = None,
) -> list[SessionRecord]:
    """Marks sessions ended. Idempotent: a session that already ended keeps its first end, and
    one already past its expiry ends as 'expired' at expires_at. A session this ends gets its
    event (session.ended, .revoked or .expired) in the same statement, and with an `actor` its
    audit row (and the actor's type and name in the event); one that had already ended gets
    none.

    Returns the sessions as stored afterwards (those that exist). Being idempotent, it is
    retried on a dropped connection like a read.
    """
    rows = await _call(
        pool,
        lambda c: c.fetch(
            _END, list(token_hashes), reason, at, actor.as_json() if actor is not None else None
        ),
        retry=True,
    )
    return [_record(r) for r in rows]


async def list_history_for_user(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    now: datetime,
    first: int,
    after: models.PagePosition | None = None,
) -> models.HistoryRows:
    """The user's sessions that have ended or expired, newest first (created_at, then id).

    An expired session that nobody ended reads as ended at its expires_at, reason 'expired'.
    Returns one page and whether another follows.
    """
    args: list[Any] = [user_id, now, first + 1]
    keyset = ""
    if after is not None:
        keyset = "AND (created_at, id) < ($4, $5)"
        args += [after.created_at, uuid.UUID(after.id)]
    # The columns of _SELECT_LIST, in its order.
    query = f"""SELECT id::text, user_id, token_hash, token_suffix, created_at, expires_at,
                   COALESCE(ended_at, expires_at) AS ended_at,
                   COALESCE(end_reason, 'expired') AS end_reason,
                   abbrev(client_ip) AS client_ip, user_agent
              FROM sessions
             WHERE user_id = $1
               AND (ended_at IS NOT NULL OR expires_at <= $2)
               {keyset}
          ORDER BY created_at DESC, id DESC
             LIMIT $3"""  # noqa: S608 (keyset is one of two constant strings)
    rows = await _call(pool, lambda c: c.fetch(query, *args), retry=True)
    records = [_record(r) for r in rows[:first]]
    return models.HistoryRows(records, has_next=len(rows) > first)


async def timeline_for_user(
    pool: asyncpg.Pool, *, user_id: str, limit: int
) -> list[models.TimelineEntry]:
    """The user's most recent sessions, active or past, newest first."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT id::text, created_at, abbrev(client_ip) FROM sessions
                WHERE user_id = $1
             ORDER BY created_at DESC, id DESC
                LIMIT $2""",
            user_id,
            limit,
        ),
        retry=True,
    )
    return [models.TimelineEntry(r[0], r[1], python_ip(r[2])) for r in rows]


async def active_batches(
    pool: asyncpg.Pool, *, now: datetime, batch: int
) -> AsyncIterator[list[SessionRecord]]:
    """Every session that should be active now (not ended, not expired), a batch at a time."""
    async with _connection(pool) as conn, conn.transaction():
        cursor = conn.cursor(
            f"""SELECT {_SELECT_LIST} FROM sessions
                 WHERE ended_at IS NULL AND expires_at > $1""",  # noqa: S608
            now,
        )
        rows: list[SessionRecord] = []
        async for row in cursor:
            rows.append(_record(row))
            if len(rows) >= batch:
                yield rows
                rows = []
        if rows:
            yield rows


async def not_ended_among(pool: asyncpg.Pool, *, token_hashes: Sequence[str]) -> set[str]:
    """Which of these sessions are still stored and not ended, as of now."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT token_hash FROM sessions
                WHERE token_hash = ANY($1::text[]) AND ended_at IS NULL""",
            list(token_hashes),
        ),
        retry=True,
    )
    return {r["token_hash"] for r in rows}


async def ended_among(pool: asyncpg.Pool, *, token_hashes: Sequence[str]) -> set[str]:
    """Which of these sessions are stored as ended."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT token_hash FROM sessions
                WHERE token_hash = ANY($1::text[]) AND ended_at IS NOT NULL""",
            list(token_hashes),
        ),
        retry=True,
    )
    return {r["token_hash"] for r in rows}


@asynccontextmanager
async def user_lock(pool: asyncpg.Pool, *, user_id: str) -> AsyncIterator[None]:
    """Holds a Postgres advisory lock named after the user: one holder at a time, across
    processes."""
    async with _connection(pool) as conn:
        _hold_session_state(conn, True)
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"user:{user_id}")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"user:{user_id}")
        _hold_session_state(conn, False)


DELETE_ATTEMPTS = 3


async def delete_user(pool: asyncpg.Pool, *, user_id: str) -> list[str]:
    """Removes every record of a user (the demo's reset), their events and deliveries with them;
    returns their token hashes.

    The sessions are locked in id order before they go. The expiry sweep, recording events for
    them meanwhile, holds their rows in its own order: should Postgres find the two waiting on
    each other, it cancels one, and a cancelled deletion starts over (it had changed nothing).
    """

    async def delete(conn: Any) -> list[str]:
        async with conn.transaction():
            await conn.execute(
                "SELECT 1 FROM sessions WHERE user_id = $1 ORDER BY id FOR UPDATE", user_id
            )
            rows = await conn.fetch(
                "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash", user_id
            )
        return [r["token_hash"] for r in rows]

    attempt = 1
    while True:
        try:
            return await _call(pool, delete)
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == DELETE_ATTEMPTS:
                raise
            attempt += 1
            log.info("postgres: deleting a user's sessions met a deadlock; starting over")


async def ping(pool: asyncpg.Pool) -> None:
    await _call(pool, lambda c: c.fetchval("SELECT 1"), retry=True)


async def replica_lag(pool: asyncpg.Pool) -> float | None:
    """Seconds a streaming replica is behind its primary; None when it cannot tell.

    0 when it has replayed all it received and still streams: an idle primary commits nothing,
    so the last replayed commit ages with no real lag. Otherwise the age of the last commit it
    replayed (None if none since it started). A server not in recovery is behind nothing.
    """
    lag = await _call(
        pool,
        lambda c: c.fetchval(
            """SELECT CASE
                        WHEN NOT pg_is_in_recovery() THEN 0
                        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                             AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0
                        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                      END::float8"""
        ),
        retry=True,
    )
    return None if lag is None else float(lag)


async def delete_history_before(pool: asyncpg.Pool, *, before: datetime, limit: int) -> int:
    """Deletes up to `limit` past sessions that ended before `before` (an expired one ends at its
    expires_at), oldest first, in one short transaction; returns how many it deleted.

    `before` must be in the past: then every row it takes is history, never an active session.
    Rows another transaction holds (an `end` being recorded) are skipped, not waited for; the
    next call takes them. Served by the index of migration 0002 on the same expression.
    """
    status = await _call(
        pool,
        lambda c: c.execute(
            """DELETE FROM sessions
                WHERE id IN (SELECT id FROM sessions
                              WHERE COALESCE(ended_at, expires_at) < $1
                           ORDER BY COALESCE(ended_at, expires_at)
                              LIMIT $2
                                FOR UPDATE SKIP LOCKED)""",
            before,
            limit,
        ),
    )
    return int(str(status).rsplit(" ", 1)[-1])  # "DELETE 7"


# -- session events (the outbox of migration 0003) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int  # delivery order
    id: str  # uuid text
    type: str  # session.created, .ended, .revoked or .expired
    session_id: str
    user_id: str
    occurred_at: datetime
    data: dict[str, Any]  # the session's stored fields (EVENT_DATA)


# The expired sessions not swept yet: not ended, expires_at after the last sweep and not after
# now. The sweep row is locked for the transaction, so sweepers in several processes take turns.
_SWEEP = f"""
WITH sweep AS (
    SELECT swept_to FROM session_expiry_sweep FOR UPDATE
), events AS (
    INSERT INTO session_events (id, type, session_id, user_id, occurred_at, data)
    SELECT gen_random_uuid(), 'session.expired', s.id, s.user_id, s.expires_at, {EVENT_DATA}
      FROM sessions s, sweep
     WHERE COALESCE(s.ended_at, s.expires_at) > sweep.swept_to
       AND COALESCE(s.ended_at, s.expires_at) <= now()
       AND s.ended_at IS NULL
    ON CONFLICT DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE session_expiry_sweep SET swept_to = now() RETURNING 1
)
SELECT (SELECT count(*) FROM events) AS expired, (SELECT count(*) FROM moved) AS swept
"""  # noqa: S608


async def sweep_expiries(pool: asyncpg.Pool) -> int:
    """Records a session.expired event for every session that has expired since the last sweep
    without being ended (Postgres's clock); returns how many. The first sweep starts now: it
    adds no events for sessions that expired before it."""

    async def sweep(conn: Any) -> int:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO session_expiry_sweep (swept_to) VALUES (now()) ON CONFLICT DO NOTHING"
            )
            row = await conn.fetchrow(_SWEEP)
        return int(row["expired"])

    return await _call(pool, sweep, retry=True)


async def events_after(pool: asyncpg.Pool, *, seq: int, limit: int) -> list[StoredEvent]:
    """Up to `limit` events after the one numbered `seq` (0: from the first), in order."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT seq, id::text, type, session_id::text, user_id, occurred_at, data
                 FROM session_events WHERE seq > $1 ORDER BY seq LIMIT $2""",
            seq,
            limit,
        ),
        retry=True,
    )
    return [StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]


async def last_event_seq(pool: asyncpg.Pool) -> int:
    """The number of the newest event (0 if none)."""
    value = await _call(
        pool, lambda c: c.fetchval("SELECT COALESCE(max(seq), 0) FROM session_events"), retry=True
    )
    return int(value)


async def events_numbered(pool: asyncpg.Pool, seqs: list[int]) -> list[StoredEvent]:
    """The events with these numbers (those that still exist), in order."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT seq, id::text, type, session_id::text, user_id, occurred_at, data
                 FROM session_events WHERE seq = ANY($1::bigint[]) ORDER BY seq""",
            seqs,
        ),
        retry=True,
    )
    return [StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

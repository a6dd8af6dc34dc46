"""Postgres: the record of every session ever created. The only module that speaks SQL
(besides the migrations themselves)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from store.models import EndReason, SessionRecord, canonical_session_id

_COLUMNS = (
    "id", "user_id", "token_hash", "token_suffix", "created_at", "expires_at",
    "ended_at", "end_reason", "client_ip", "user_agent",
)  # fmt: skip
# Built from the constant above only; no input ever reaches SQL text.
_SELECT_LIST = ", ".join(_COLUMNS)


def _record(row: Any) -> SessionRecord:
    return SessionRecord(
        id=str(row["id"]),
        user_id=row["user_id"],
        token_hash=row["token_hash"],
        token_suffix=row["token_suffix"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        client_ip=str(row["client_ip"]),
        user_agent=row["user_agent"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
    )


async def create_many(pool: asyncpg.Pool, *, records: Sequence[SessionRecord]) -> None:
    """Inserts the records in one COPY: thousands of rows a second."""
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
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("sessions", records=rows, columns=_COLUMNS)


async def delete(pool: asyncpg.Pool, *, ids: Sequence[str]) -> list[str]:
    """Undoes create_many (by the new rows' own ids, so another writer's row is never touched);
    returns the token hashes of the rows it removed."""
    rows = await pool.fetch(
        "DELETE FROM sessions WHERE id = ANY($1::uuid[]) RETURNING token_hash",
        [uuid.UUID(i) for i in ids],
    )
    return [r["token_hash"] for r in rows]


async def taken_token_hashes(pool: asyncpg.Pool, *, token_hashes: Sequence[str]) -> set[str]:
    """Which of these token hashes some stored session already has."""
    if not token_hashes:
        return set()
    rows = await pool.fetch(
        "SELECT token_hash FROM sessions WHERE token_hash = ANY($1::text[])", list(token_hashes)
    )
    return {r["token_hash"] for r in rows}


async def get_for_user(
    pool: asyncpg.Pool, *, user_id: str, session_id: str
) -> SessionRecord | None:
    """One session by its public id, only if it is this user's."""
    key = canonical_session_id(session_id)
    if key is None:
        return None
    row = await pool.fetchrow(
        f"SELECT {_SELECT_LIST} FROM sessions WHERE id = $1 AND user_id = $2",  # noqa: S608
        uuid.UUID(key),
        user_id,
    )
    return _record(row) if row else None


async def end(
    pool: asyncpg.Pool, *, token_hashes: Sequence[str], reason: EndReason, at: datetime
) -> list[SessionRecord]:
    """Marks sessions ended. Idempotent: a session that already ended keeps its first end, and
    one already past its expiry ends as 'expired' at expires_at.

    Returns the sessions as stored afterwards (those that exist).
    """
    rows = await pool.fetch(
        f"""UPDATE sessions
               SET ended_at = COALESCE(ended_at, GREATEST(created_at, LEAST($3, expires_at))),
                   end_reason = COALESCE(end_reason,
                                         CASE WHEN expires_at <= $3 THEN 'expired' ELSE $2 END)
             WHERE token_hash = ANY($1::text[])
         RETURNING {_SELECT_LIST}""",  # noqa: S608
        list(token_hashes),
        reason,
        at,
    )
    return [_record(r) for r in rows]


async def list_history_for_user(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    now: datetime,
    first: int,
    after: tuple[datetime, str] | None = None,
) -> tuple[list[SessionRecord], bool]:
    """The user's sessions that have ended or expired, newest first (created_at, then id).

    An expired session that nobody ended reads as ended at its expires_at, reason 'expired'.
    Returns one page and whether another follows.
    """
    args: list[Any] = [user_id, now, first + 1]
    keyset = ""
    if after is not None:
        keyset = "AND (created_at, id) < ($4, $5)"
        args += [after[0], uuid.UUID(after[1])]
    rows = await pool.fetch(
        f"""SELECT id, user_id, token_hash, token_suffix, created_at, expires_at,
                   COALESCE(ended_at, expires_at) AS ended_at,
                   COALESCE(end_reason, 'expired') AS end_reason,
                   client_ip, user_agent
              FROM sessions
             WHERE user_id = $1
               AND (ended_at IS NOT NULL OR expires_at <= $2)
               {keyset}
          ORDER BY created_at DESC, id DESC
             LIMIT $3""",  # noqa: S608 (keyset is one of two constant strings)
        *args,
    )
    records = [_record(r) for r in rows[:first]]
    return records, len(rows) > first


async def timeline_for_user(
    pool: asyncpg.Pool, *, user_id: str, limit: int
) -> list[tuple[str, datetime, str]]:
    """(id, created_at, client_ip) of the user's most recent sessions, active or past."""
    rows = await pool.fetch(
        """SELECT id, created_at, client_ip FROM sessions
            WHERE user_id = $1
         ORDER BY created_at DESC, id DESC
            LIMIT $2""",
        user_id,
        limit,
    )
    return [(str(r["id"]), r["created_at"], str(r["client_ip"])) for r in rows]


async def active_batches(
    pool: asyncpg.Pool, *, now: datetime, batch: int
) -> AsyncIterator[list[SessionRecord]]:
    """Every session that should be active now (not ended, not expired), a batch at a time."""
    async with pool.acquire() as conn, conn.transaction():
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
    rows = await pool.fetch(
        """SELECT token_hash FROM sessions
            WHERE token_hash = ANY($1::text[]) AND ended_at IS NULL""",
        list(token_hashes),
    )
    return {r["token_hash"] for r in rows}


@asynccontextmanager
async def user_lock(pool: asyncpg.Pool, *, user_id: str) -> AsyncIterator[None]:
    """Holds a Postgres advisory lock named after the user: one holder at a time, across
    processes."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"user:{user_id}")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"user:{user_id}")


async def delete_user(pool: asyncpg.Pool, *, user_id: str) -> list[str]:
    """Removes every record of a user (the demo's reset); returns their token hashes."""
    rows = await pool.fetch("DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash", user_id)
    return [r["token_hash"] for r in rows]


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")

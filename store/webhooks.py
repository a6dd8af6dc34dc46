"""Postgres: webhook endpoints and deliveries (migration 0004), and the fan-out of session events
to them. The SQL of the webhook side, as records.py is the SQL of sessions (whose statements
also write the events themselves)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from store.records import StoredEvent, _call, _connection, _hold_session_state

# One dispatcher at a time per database: the holder of this advisory lock (any number).
DISPATCHER_LOCK = 0x5E5510E7


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    event_types: list[str]  # empty: every type
    secret: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint_id: str
    url: str
    secret: str
    event_seq: int
    event_id: str
    payload: dict[str, Any]
    attempts: int  # made so far


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        str(row["id"]),
        row["url"],
        list(row["event_types"]),
        row["secret"],
        row["created_at"],
        row["disabled_at"],
        row["disabled_reason"],
    )


async def add_endpoint(
    pool: asyncpg.Pool, *, url: str, event_types: Sequence[str], secret: str
) -> Endpoint:
    row = await _call(
        pool,
        lambda c: c.fetchrow(
            """INSERT INTO webhook_endpoints (id, url, event_types, secret)
               VALUES ($1, $2, $3, $4) RETURNING *""",
            uuid.uuid4(),
            url,
            list(event_types),
            secret,
        ),
    )
    return _endpoint(row)


async def endpoints(pool: asyncpg.Pool) -> list[Endpoint]:
    rows = await _call(
        pool,
        lambda c: c.fetch("SELECT * FROM webhook_endpoints ORDER BY created_at, id"),
        retry=True,
    )
    return [_endpoint(r) for r in rows]


async def remove_endpoint(pool: asyncpg.Pool, *, endpoint_id: str) -> bool:
    """Removes an endpoint and its deliveries; False if there is none with this id."""
    status = await _call(
        pool, lambda c: c.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
    )
    return str(status) == "DELETE 1"


async def disable_endpoint(pool: asyncpg.Pool, *, endpoint_id: str, reason: str) -> None:
    """Stops deliveries to an endpoint: pending ones fail, no new ones are made."""

    async def disable(conn: Any) -> None:
        async with conn.transaction():
            await conn.execute(
                """UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2
                    WHERE id = $1 AND disabled_at IS NULL""",
                endpoint_id,
                reason,
            )
            await conn.execute(
                """UPDATE webhook_deliveries
                      SET status = 'failed', finished_at = now(), last_error = $2
                    WHERE endpoint_id = $1 AND status = 'pending'""",
                endpoint_id,
                reason,
            )

    await _call(pool, disable, retry=True)


async def not_fanned_out(pool: asyncpg.Pool, *, limit: int) -> list[StoredEvent]:
    """The oldest events not fanned out yet, in order. Committed late, an event with a lower
    number than one already fanned out is still found: nothing goes by a cursor."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT seq, id::text, type, session_id::text, user_id, occurred_at, data
                 FROM session_events WHERE fanned_out_at IS NULL ORDER BY seq LIMIT $1""",
            limit,
        ),
        retry=True,
    )
    return [StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]


async def fan_out(pool: asyncpg.Pool, *, payloads: dict[int, dict[str, Any] | None]) -> int:
    """Keeps each event's payload (None: no endpoint wants it) and makes its deliveries, one per
    enabled endpoint that wants its type, in one transaction; returns how many events it fanned
    out (their deliveries may be none). An event fanned out meanwhile is left as it is.

    Events another transaction holds (their session being deleted, with its events) are
    skipped, not waited for: waiting on rows that a deletion takes in another order is a
    deadlock. A skipped event still waiting is taken by the next pass; a deleted one is gone."""

    async def fan(conn: Any) -> int:
        async with conn.transaction():
            done = await conn.fetch(
                """WITH mine AS (
                       SELECT seq FROM session_events
                        WHERE seq = ANY($1::bigint[]) AND fanned_out_at IS NULL
                     ORDER BY seq
                          FOR UPDATE SKIP LOCKED)
                   UPDATE session_events e
                      SET fanned_out_at = now(), payload = p.payload
                     FROM unnest($1::bigint[], $2::jsonb[]) AS p(seq, payload), mine
                    WHERE e.seq = p.seq AND mine.seq = e.seq
                RETURNING e.seq, e.type""",
                list(payloads),
                [json.dumps(p) if p is not None else None for p in payloads.values()],
            )
            if not done:
                return 0
            await conn.execute(
                """INSERT INTO webhook_deliveries (endpoint_id, event_seq)
                   SELECT w.id, d.seq
                     FROM unnest($1::bigint[], $2::text[]) AS d(seq, type)
                     JOIN session_events e ON e.seq = d.seq AND e.payload IS NOT NULL
                     JOIN webhook_endpoints w
                       ON w.disabled_at IS NULL
                      AND (w.event_types = '{}' OR d.type = ANY(w.event_types))
                   ON CONFLICT DO NOTHING""",
                [r["seq"] for r in done],
                [r["type"] for r in done],
            )
            return len(done)

    return await _call(pool, fan)


async def due(pool: asyncpg.Pool, *, limit: int, per_endpoint: int) -> list[Delivery]:
    """Pending deliveries whose time has come, oldest first: at most `per_endpoint` of each
    endpoint (its oldest), `limit` in all."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT d.endpoint_id::text, w.url, w.secret, d.event_seq, e.id::text, e.payload,
                      d.attempts
                 FROM (SELECT *, row_number() OVER (PARTITION BY endpoint_id
                                                    ORDER BY next_attempt_at, event_seq) AS rank
                         FROM webhook_deliveries
                        WHERE status = 'pending' AND next_attempt_at <= now()) d
                 JOIN webhook_endpoints w ON w.id = d.endpoint_id
                 JOIN session_events e ON e.seq = d.event_seq
                WHERE d.rank <= $2
             ORDER BY d.next_attempt_at, d.event_seq
                LIMIT $1""",
            limit,
            per_endpoint,
        ),
        retry=True,
    )
    return [Delivery(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]


async def record_attempt(
    pool: asyncpg.Pool,
    *,
    delivery: Delivery,
    delivered: bool,
    status: int | None,
    error: str | None,
    retry_in: timedelta | None,
) -> None:
    """What an attempt came to: delivered, to be retried in `retry_in`, or (neither) failed."""
    state = "delivered" if delivered else "pending" if retry_in is not None else "failed"
    await _call(
        pool,
        lambda c: c.execute(
            """UPDATE webhook_deliveries
                  SET attempts = attempts + 1, status = $3, last_status = $4, last_error = $5,
                      next_attempt_at = now() + COALESCE($6, interval '0'),
                      finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
                WHERE endpoint_id = $1 AND event_seq = $2 AND status = 'pending'""",
            uuid.UUID(delivery.endpoint_id),
            delivery.event_seq,
            state,
            status,
            error,
            retry_in,
        ),
        retry=True,
    )


async def replay(pool: asyncpg.Pool, *, endpoint_id: str, since: datetime) -> int:
    """Sends again, to one endpoint, every fanned-out event it wants that occurred at or after
    `since` (a new delivery, or one delivered or failed made pending again); returns how many."""
    status = await _call(
        pool,
        lambda c: c.execute(
            """INSERT INTO webhook_deliveries (endpoint_id, event_seq)
               SELECT w.id, e.seq
                 FROM session_events e
                 JOIN webhook_endpoints w ON w.id = $1 AND w.disabled_at IS NULL
                WHERE e.occurred_at >= $2 AND e.payload IS NOT NULL
                  AND (w.event_types = '{}' OR e.type = ANY(w.event_types))
               ON CONFLICT (endpoint_id, event_seq) DO UPDATE
                  SET status = 'pending', attempts = 0, next_attempt_at = now(),
                      finished_at = NULL""",
            uuid.UUID(endpoint_id),
            since,
        ),
    )
    return int(str(status).rsplit(" ", 1)[-1])


async def oldest_pending_age(pool: asyncpg.Pool) -> float:
    """Seconds since the oldest event still waiting to be fanned out or delivered occurred."""
    age = await _call(
        pool,
        lambda c: c.fetchval(
            # Two small reads, each on its partial index (events not fanned out, pending
            # deliveries), rather than a look at every event ever recorded.
            """SELECT EXTRACT(EPOCH FROM now() - min(oldest)) FROM (
                   SELECT min(occurred_at) AS oldest
                     FROM session_events WHERE fanned_out_at IS NULL
                   UNION ALL
                   SELECT min(e.occurred_at)
                     FROM webhook_deliveries d JOIN session_events e ON e.seq = d.event_seq
                    WHERE d.status = 'pending'
               ) AS waiting"""
        ),
        retry=True,
    )
    return max(0.0, float(age or 0.0))


@asynccontextmanager
async def dispatcher_lock(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """Yields a connection holding the dispatcher's lock, or None if another holds it. The lock
    lives as long as that connection: a process that dies (or loses Postgres) lets it go."""
    async with _connection(pool) as conn:
        _hold_session_state(conn, True)
        held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", DISPATCHER_LOCK)
        try:
            yield conn if held else None
        finally:
            if held and not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", DISPATCHER_LOCK)
            _hold_session_state(conn, False)

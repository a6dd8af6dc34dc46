"""Postgres backends waiting on a lock: how a test knows that the statement it set up to block
is blocked, before it goes on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

WAITING = """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND wait_event_type = 'Lock' AND query LIKE $1"""


async def until_waiting_on_a_lock(conn: Any, query_like: str, *, within: float = 10.0) -> list[int]:
    """The backends of `conn`'s database (but its own) waiting on a lock while they run a
    statement LIKE `query_like`, once there is one; AssertionError if none within `within`
    seconds (a "no hang" bound). `conn`: an asyncpg connection or pool."""
    deadline = time.monotonic() + within
    while True:
        await asyncio.sleep(0.02)
        # Within a transaction (a test's locker), the activity seen is the transaction's first
        # look unless dropped.
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        waiting = [r["pid"] for r in await conn.fetch(WAITING, query_like)]
        if waiting:
            return waiting
        assert time.monotonic() < deadline, f"nothing running {query_like!r} waited on a lock"

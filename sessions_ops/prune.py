"""`sessions-api prune`: past sessions (and audit rows) older than their retention deleted, a
bounded batch at a time, so that history stays bounded while the service and its writers run.

Each batch is one short transaction (see `SessionStore.prune_history`): no long lock, no long
transaction, and a run cut off anywhere loses only its progress; running it again goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from store import admin
from store.sessions import SessionStore

# Seconds between two progress reports, at most.
PROGRESS_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class Pruned:
    deleted: int  # rows deleted (sessions, or audit rows)
    batches: int  # batches that deleted any
    complete: bool  # False when stopped early (max_batches, a stop request): some may remain
    seconds: float


async def prune_history(
    store: SessionStore,
    *,
    before: datetime,
    batch: int,
    pause: float = 0.0,
    max_batches: int | None = None,
    stop: asyncio.Event | None = None,
    progress: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Deletes past sessions that ended before `before`, `batch` at a time, until none is left,
    `max_batches` batches have run, or `stop` is set (checked between batches). `pause` seconds
    between batches leave room to other work on a busy database."""
    return await _in_batches(
        lambda limit: store.prune_history(before=before, limit=limit),
        batch=batch,
        pause=pause,
        max_batches=max_batches,
        stop=stop,
        progress=progress,
    )


async def prune_audit(
    pool: asyncpg.Pool,
    *,
    before: datetime,
    batch: int,
    pause: float = 0.0,
    max_batches: int | None = None,
    stop: asyncio.Event | None = None,
) -> Pruned:
    """Deletes audit rows older than `before`, within the same bounds as `prune_history`."""
    return await _in_batches(
        lambda limit: admin.prune_audit(pool, before=before, limit=limit),
        batch=batch,
        pause=pause,
        max_batches=max_batches,
        stop=stop,
    )


async def _in_batches(
    delete: Callable[[int], Awaitable[int]],
    *,
    batch: int,
    pause: float,
    max_batches: int | None,
    stop: asyncio.Event | None,
    progress: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Calls `delete(batch)` (one short transaction, returning how many it deleted) until it
    deletes fewer than `batch`, `max_batches` batches have run, or `stop` is set."""
    loop = asyncio.get_running_loop()
    started = reported = loop.time()
    deleted = batches = 0
    stop = stop or asyncio.Event()

    def so_far(complete: bool) -> Pruned:
        return Pruned(deleted, batches, complete, loop.time() - started)

    while True:
        if stop.is_set() or (max_batches is not None and batches >= max_batches):
            return so_far(complete=False)
        count = await delete(batch)
        deleted += count
        batches += 1 if count else 0
        # A short batch means none was left (rows locked by a writer just now are the next
        # run's).
        if count < batch:
            return so_far(complete=True)
        if progress is not None and loop.time() - reported >= PROGRESS_EVERY:
            reported = loop.time()
            progress(so_far(complete=False))
        if pause:
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except TimeoutError:
                pass

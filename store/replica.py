"""A Postgres streaming replica for reads that may be a little behind: history pages and the
signals' timeline. Everything else reads and writes the primary (see SessionStore).

The replica's health is measured in the background, at most once every RECHECK seconds, and
only while reads ask for it: a read uses the last measurement, never waits for one. While the
replica is down or further behind than its max lag, those reads go to the primary, each one
counted by FALLBACKS; a read that finds the replica down goes to the primary at once too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Literal

import asyncpg
from prometheus_client import Counter

from store import records
from store.errors import describe_outage, outage_of

log = logging.getLogger(__name__)

State = Literal["ok", "unavailable", "lagging"]

# Seconds a measurement of the replica is used for before the next read starts another.
RECHECK = 1.0

FALLBACKS = Counter(
    "sessions_api_replica_fallbacks_total",
    "Reads meant for the Postgres replica (history, signals' timeline) that went to the primary "
    "instead, by reason: unavailable (down, not answering in time, or its last measurement "
    "failed) or lagging (further behind than DATABASE_REPLICA_MAX_LAG).",
    ["reason"],
)


class Replica:
    """The replica's pool and its last measured state."""

    def __init__(self, pool: asyncpg.Pool, *, max_lag: float) -> None:
        self.pool = pool
        self.max_lag = max_lag
        # None until first measured: reads go to the primary meanwhile, not counted.
        self.state: State | None = None
        self._measured_at = -math.inf
        self._measuring: asyncio.Task[State] | None = None

    def pool_for_read(self) -> asyncpg.Pool | None:
        """The replica's pool if it was healthy when last measured, else None (read the primary;
        counted). Starts a new measurement in the background when the last one is stale."""
        if time.monotonic() - self._measured_at >= RECHECK and (
            self._measuring is None or self._measuring.done()
        ):
            self._measured_at = time.monotonic()
            self._measuring = asyncio.ensure_future(self.measure())
        state = self.state
        if state == "ok":
            return self.pool
        if state is not None:
            FALLBACKS.labels(state).inc()
        return None

    def failed(self, exc: BaseException, *, down: bool = True) -> None:
        """A read on the replica failed, and goes to the primary. If the replica is `down`, it is
        taken as unavailable until the next measurement (at most RECHECK seconds away) says
        otherwise; else (a read cancelled by a replay conflict) only this read moves."""
        FALLBACKS.labels("unavailable").inc()
        if not down:
            log.info("postgres replica: a read went to the primary: %s", describe_outage(exc))
            return
        if self.state != "unavailable":
            log.warning("postgres replica: reading the primary instead: %s", describe_outage(exc))
        self.state = "unavailable"
        self._measured_at = time.monotonic()

    async def measure(self) -> State:
        """Measures the replica now (within the pool's bounds) and keeps the result."""
        try:
            lag = await records.replica_lag(self.pool)
        except Exception as exc:
            if outage_of(exc) is None:
                log.exception("postgres replica: its lag could not be measured")
            elif self.state != "unavailable":
                log.warning("postgres replica is unavailable: %s", describe_outage(exc))
            state: State = "unavailable"
        else:
            state = "ok" if lag is not None and lag <= self.max_lag else "lagging"
            if state == "lagging" and self.state != "lagging":
                shown = "an unknown time" if lag is None else f"{lag:.1f} s"
                log.warning("postgres replica is behind by %s: reading the primary", shown)
            elif state == "ok" and self.state not in (None, "ok"):
                log.info("postgres replica is back: reading it again")
        self.state = state
        self._measured_at = time.monotonic()
        return state

    async def aclose(self) -> None:
        if self._measuring is not None and not self._measuring.done():
            self._measuring.cancel()
            await asyncio.wait([self._measuring])
        await records.close_pool(self.pool)

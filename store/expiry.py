"""The expiry sweep: a session that simply expires changes no row (history reads it as expired
from its expires_at), so something must notice the moment pass to record its session.expired
event. Every `serve` process sweeps every EXPIRY_SWEEP_INTERVAL seconds; the sweeps take turns
in Postgres (records.sweep_expiries), so an expiry gets its one event within about an interval
of happening, however many processes run."""

from __future__ import annotations

import asyncio
import logging

from store.errors import describe_outage, outage_of
from store.sessions import SessionStore

log = logging.getLogger(__name__)


async def sweep_forever(store: SessionStore, *, interval: float) -> None:
    """Sweeps, then waits `interval` seconds, until cancelled. A sweep that fails (Postgres
    down) is logged and tried again at the next turn: it misses nothing, as the next one looks
    back to where the last one that worked stopped."""
    while True:
        try:
            expired = await store.record_expiries()
        except Exception as exc:
            if outage_of(exc) is None:
                log.exception("the expiry sweep failed")
            else:
                log.warning("the expiry sweep waits for Postgres: %s", describe_outage(exc))
        else:
            if expired:
                log.info("recorded %d session expiries", expired)
        await asyncio.sleep(interval)

"""The event workers a process runs in the background: the expiry sweep (store/expiry.py) and
the webhook dispatcher. `serve` runs them (EVENT_WORKERS), and so does `sessions-api webhooks
run`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sessions_config.resources import Resources
from sessions_events.dispatcher import Dispatcher
from store.expiry import sweep_forever


@asynccontextmanager
async def event_workers(resources: Resources) -> AsyncIterator[Dispatcher]:
    """Runs both while the block runs; stops them (waiting for them) before it ends, so that
    nothing of theirs outlives the pools they use."""
    settings = resources.settings
    dispatcher = Dispatcher(resources.store, resources.geo, settings)
    tasks = [
        asyncio.create_task(
            sweep_forever(resources.store, interval=settings.expiry_sweep_interval)
        ),
        asyncio.create_task(dispatcher.run()),
    ]
    try:
        yield dispatcher
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dispatcher.aclose()

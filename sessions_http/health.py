"""/healthz: the process answers. /readyz: Postgres and Redis answer too, each within
READY_TIMEOUT (checked at once, so a hung one never holds up the answer). With a replica
configured, it says how the replica is too, without making the service unready: reads meant for
it go to the primary while it is down or behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import JSONResponse

from sessions_config.resources import Resources
from sessions_http.responses import NO_STORE, JsonResponse
from store import active, records
from store.replica import Replica

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    return JsonResponse({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    bound = res.settings.ready_timeout
    names = ("postgres", "redis")
    replica = res.store.replica
    outcomes, replica_state = await asyncio.gather(
        asyncio.gather(
            _check("postgres", records.ping(res.store.pool), bound),
            _check("redis", active.ping(res.store.redis), bound),
        ),
        _replica_state(replica, bound) if replica is not None else _nothing(),
    )
    report = dict(zip(names, outcomes, strict=True))
    ready = all(v == "ok" for v in report.values())
    extra = {"postgres_replica": replica_state} if replica_state is not None else {}
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", **report, **extra},
        status_code=200 if ready else 503,
        headers=NO_STORE,
    )


async def _replica_state(replica: Replica, bound: float) -> str:
    """The replica's state, "ok", "unavailable" or "lagging", measured now (the reads then go
    by it)."""
    try:
        return await asyncio.wait_for(replica.measure(), bound)
    except TimeoutError:
        log.warning("readiness: postgres replica did not answer within %g s", bound)
        return "unavailable"


async def _nothing() -> None:
    return None


async def _check(name: str, check: Awaitable[None], bound: float) -> str:
    try:
        await asyncio.wait_for(check, bound)
    except TimeoutError:
        log.warning("readiness: %s did not answer within %g s", name, bound)
        return "unavailable"
    except Exception as exc:  # any failure means "not ready"; say which and why
        log.warning("readiness: %s is not answering: %s", name, exc)
        return "unavailable"
    return "ok"

"""/healthz: the process answers. /readyz: Postgres and Redis answer too."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from graph.resources import Resources
from store import active, records

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    checks = {
        "postgres": records.ping(res.store.pool),
        "redis": active.ping(res.store.redis),
    }
    report: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, CHECK_TIMEOUT)
            report[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; say which and why
            log.warning("readiness: %s is not answering: %r", name, exc)
            report[name] = "unavailable"
    ready = all(v == "ok" for v in report.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **report},
        status_code=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )

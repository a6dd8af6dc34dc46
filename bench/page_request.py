"""In-process cost of one whole sessions page request through the ASGI app, and where it goes.

    .venv/bin/python -m bench.page_request [N] [--profile] [graphql|direct|baseline]
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null \
        .venv/bin/python -m bench.page_request N --callgrind [graphql|direct|baseline]
    .venv/bin/python -m bench.page_request --serve PORT    # the `direct` app, for bench.throughput

Seeds the benchmark page (bench.common.seed_page), opens the app's lifespan, warms it, then
calls the app N times (500 by default) directly as ASGI (no socket, no HTTP parser): wall and CPU
time per request. `rest` (the default) and `graphql` are the service's routes; `direct` is the
service's app with a route that makes the page without GraphQL (the same store, geolocation,
middleware and encoder: what the service costs around GraphQL); `baseline` is bench/baseline.py.
`--profile` adds a cProfile listing by cumulative and by own time. `--callgrind`, under valgrind
as above, has callgrind count the instructions of the N requests alone (its "Collected" line at
exit, divided by N): a figure that other processes sharing the machine do not change, unlike CPU
time.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench import baseline
from bench.common import bench_environment, seed_page
from resolvers.history import DEFAULT_PAGE
from sessions_config.resources import Resources
from sessions_config.settings import Settings
from sessions_geo.model import GeoInfo
from sessions_http.app import create_app
from sessions_http.cookie import session_token
from sessions_http.responses import NO_STORE, HttpError, JsonResponse
from sessions_http.rest import SESSIONS_DOCUMENT
from sessions_http.serving import uvicorn_options
from store.models import format_timestamp

WARM_UP = 50
DIRECT = "/bench/direct"
GEO_FIELDS = tuple(f.name for f in fields(GeoInfo))


async def direct_page(request: Request) -> Response:
    """The v1 page of GET /v1/users/me/sessions, made without GraphQL."""
    res: Resources = request.app.state.resources
    token = session_token(request)
    found = await res.store.sign_in(token) if token else None
    if found is None:
        raise HttpError(401, "unauthenticated", "Sign in first.")
    current = found.session
    active, history = await asyncio.gather(
        res.store.list_active_for_user(user_id=current.user_id, listed=found.listed),
        res.store.list_history_for_user(user_id=current.user_id, first=DEFAULT_PAGE),
    )
    ips = [r.client_ip for r in active] + [r.client_ip for r in history.records]
    geo = dict(zip(ips, await res.geo.many(ips), strict=True))

    def located(ip: str) -> dict[str, Any] | None:
        info = geo.get(ip)
        return None if info is None else {name: getattr(info, name) for name in GEO_FIELDS}

    body = {
        "sessions": [
            {
                "token_suffix": r.token_suffix,
                "created_at": format_timestamp(r.created_at),
                "expires_at": format_timestamp(r.expires_at),
                "client_ip": r.client_ip,
                "user_agent": r.user_agent,
                "geo": located(r.client_ip),
                "is_current": r.id == current.id,
            }
            for r in active
        ],
        "history": [
            {
                "token_suffix": r.token_suffix,
                "created_at": format_timestamp(r.created_at),
                "client_ip": r.client_ip,
                "user_agent": r.user_agent,
                "geo": located(r.client_ip),
            }
            for r in history.records
        ],
    }
    return JsonResponse(body, headers=NO_STORE)


def create_direct_app(settings: Settings | None = None) -> Starlette:
    """The service's app (settings from the environment by default) with the direct route."""
    app = create_app(settings)
    app.router.routes.append(Route(DIRECT, direct_page))
    return app


def _scope(method: str, path: str, token: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"cookie", f"psession={token}".encode()),
        (b"accept", b"application/json"),
        (b"user-agent", b"bench"),
    ]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(app: Any, scope: Mapping[str, Any], body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _callgrind(switch: str) -> None:
    """Turns callgrind's instrumentation of this process on or off."""
    command = await asyncio.create_subprocess_exec(
        "callgrind_control", "-i", switch, str(os.getpid()), stdout=asyncio.subprocess.DEVNULL
    )
    await command.wait()


async def run(
    env: Mapping[str, str], n: int, route: str, profile: bool, callgrind: bool = False
) -> None:
    token = await seed_page(env)
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
        geo_provider="offline",
        user_max_concurrent_requests=64,
    )
    app: Any = create_app(settings)
    if route == "baseline":
        app = baseline.create_app(baseline.Config.from_env(env))
    if route == "direct":
        app = create_direct_app(settings)
        scope = _scope("GET", DIRECT, token, b"")
        body = b""
    elif route == "graphql":
        body = json.dumps({"query": SESSIONS_DOCUMENT, "variables": {"historyLimit": 50}}).encode()
        scope = _scope("POST", "/graphql", token, body)
    else:
        body = b""
        scope = _scope("GET", "/v1/users/me/sessions", token, body)
    async with app.router.lifespan_context(app):
        status, _ = await _call(app, scope, body)
        await asyncio.sleep(0.5)  # the geo cache write follows the first answer
        for _ in range(WARM_UP):
            status, _ = await _call(app, scope, body)
            assert status == 200, status
        profiler = cProfile.Profile() if profile else None
        if callgrind:
            await _callgrind("on")
        if profiler:
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await _call(app, scope, body)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler:
            profiler.disable()
        if callgrind:
            await _callgrind("off")
    print(f"{route}: {n} requests, wall {wall / n * 1e3:.2f} ms, cpu {cpu / n * 1e3:.2f} ms each")
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)


def main() -> None:
    if "--serve" in sys.argv:
        port = int(sys.argv[sys.argv.index("--serve") + 1])
        options = {**uvicorn_options(Settings()), "log_level": "warning"}
        uvicorn.run(create_direct_app, factory=True, host="127.0.0.1", port=port, **options)
        return
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "500"))
    route = next((r for r in ("graphql", "direct", "baseline") if r in sys.argv), "rest")
    with bench_environment() as env:
        asyncio.run(run(env, n, route, "--profile" in sys.argv, "--callgrind" in sys.argv))


if __name__ == "__main__":
    main()

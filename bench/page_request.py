"""In-process cost of one whole sessions page request through the ASGI app, and where it goes.

    .venv/bin/python -m bench.page_request [N] [--profile] [graphql|baseline]

Seeds the benchmark page (bench.common.seed_page), opens the app's lifespan, warms it, then
calls the app N times (500 by default) directly as ASGI (no socket, no HTTP parser): wall and CPU
time per request. `--profile` adds a cProfile listing by cumulative and by own time, the way to
see what middleware,, authentication, storage, geolocation and encoding cost around GraphQL.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench import baseline
from bench.common import bench_environment, seed_page
from sessions_config.settings import Settings
from sessions_http.app import create_app
from sessions_http.rest import SESSIONS_DOCUMENT

WARM_UP = 50


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


async def run(env: Mapping[str, str], n: int, route: str, profile: bool) -> None:
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
    if route == "graphql":
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
        if profiler:
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await _call(app, scope, body)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler:
            profiler.disable()
    print(f"{route}: {n} requests, wall {wall / n * 1e3:.2f} ms, cpu {cpu / n * 1e3:.2f} ms each")
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)


def main() -> None:
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "500"))
    route = next((r for r in ("graphql", "baseline") if r in sys.argv), "rest")
    with bench_environment() as env:
        asyncio.run(run(env, n, route, "--profile" in sys.argv))


if __name__ == "__main__":
    main()

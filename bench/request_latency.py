"""Latency of one user's sessions page, through a real server.

    .venv/bin/python -m bench.request_latency [REQUESTS]

Seeds one user with 5 active and 50 past sessions (distinct public IPs), starts
`sessions-api serve` (one uvicorn worker, offline geolocation), warms the geo cache, then sends
REQUESTS (default 2000) sequential requests to the REST route and to GraphQL with the same
fields, and prints mean, p50 and p99 per request (client overhead included).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import httpx

from bench.common import bench_environment
from sessions_config.resources import open_resources
from sessions_config.settings import Settings
from sessions_http.rest import SESSIONS_DOCUMENT
from store.models import utcnow
from store.sessions import NewSession


async def seed(env: dict[str, str]) -> str:
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
    )
    now = utcnow()
    batch = [
        NewSession(
            user_id="bench",
            ip=f"81.2.{i}.10",
            user_agent="Mozilla/5.0 bench",
            created_at=now - timedelta(hours=i + 1),
        )
        for i in range(5)
    ] + [
        NewSession(
            user_id="bench",
            ip=f"89.160.{i}.20",
            user_agent="Mozilla/5.0 bench",
            created_at=now - timedelta(days=i + 1),
            ended_at=now - timedelta(days=i),
        )
        for i in range(50)
    ]
    async with open_resources(settings, geo=False) as res:
        created = await res.store.create_many(batch)
    return created[0].token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(client: httpx.Client, count: int, send: object) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = send()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


def report(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(
        f"{name:8} mean {statistics.fmean(ms):.2f} ms  p50 {ms[len(ms) // 2]:.2f} ms  "
        f"p99 {p99:.2f} ms  ({len(ms)} requests)"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cli = shutil.which("sessions-api") or f"{sys.prefix}/bin/sessions-api"
    with bench_environment() as env:
        token = asyncio.run(seed(env))
        port = free_port()
        server = subprocess.Popen(
            [cli, "serve", "--port", str(port)], env={**env, "LOG_LEVEL": "warning"}
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"cookie": f"psession={token}"}) as client:
                for _ in range(100):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                body = {"query": SESSIONS_DOCUMENT, "variables": {"historyLimit": 50}}
                for _ in range(50):  # warm-up: geo cache, parser and validation caches
                    client.get("/v1/users/me/sessions")
                    client.post("/graphql", json=body)
                report("REST", measure(client, count, lambda: client.get("/v1/users/me/sessions")))
                report(
                    "GraphQL", measure(client, count, lambda: client.post("/graphql", json=body))
                )
                report("healthz", measure(client, count, lambda: client.get("/healthz")))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()

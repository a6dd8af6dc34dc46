"""Latency of one user's sessions page, through a real server.

    .venv/bin/python -m bench.request_latency [REQUESTS]

Seeds one user with 5 active and 50 past sessions (distinct public IPs), starts
`sessions-api serve` (one uvicorn worker, offline geolocation), warms the geo cache, then sends
REQUESTS (default 2000) sequential requests to the REST route and to GraphQL with the same
fields, and prints mean, p50 and p99 per request (client overhead included).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import httpx

from bench.common import bench_environment, seed_page, serve_service
from sessions_http.rest import SESSIONS_DOCUMENT


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
    with bench_environment() as env:
        token = asyncio.run(seed_page(env))
        with (
            serve_service(env) as base,
            httpx.Client(base_url=base, headers={"cookie": f"psession={token}"}) as client,
        ):
            body = {"query": SESSIONS_DOCUMENT, "variables": {"historyLimit": 50}}
            for _ in range(50):  # warm-up: geo cache, parser and validation caches
                client.get("/v1/users/me/sessions")
                client.post("/graphql", json=body)
            report("REST", measure(client, count, lambda: client.get("/v1/users/me/sessions")))
            report("GraphQL", measure(client, count, lambda: client.post("/graphql", json=body)))
            report("healthz", measure(client, count, lambda: client.get("/healthz")))


if __name__ == "__main__":
    main()

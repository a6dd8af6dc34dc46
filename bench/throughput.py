"""Throughput of one user's sessions page: REST, GraphQL and the hand-written baseline, side
by side.

    .venv/bin/python -m bench.throughput [--rounds 3] [--seconds 10] [--connections 16]
                                         [--loader auto|wrk|python] [--direct]

Seeds one user with 5 active and 50 past sessions (55 distinct public IPs), serves the service
(`sessions-api serve`, one uvicorn worker, offline geolocation) and bench/baseline.py (one
uvicorn worker) on loopback, warms the geo cache and checks that the REST and baseline bodies are
the same bytes. Then, for several rounds, it loads `GET /v1/users/me/sessions`, `POST /graphql`
with the REST document's fields, and the baseline in turn (the order rotates each round), each
with CONNECTIONS keep-alive connections for SECONDS, and prints requests/s, p50 and p99 of each
run, then the medians over the rounds and the ratios to the baseline.

The load generator is `wrk` when it is installed (`apt-get install wrk`), else a small asyncio
HTTP/1.1 client in this process. The service is allowed as many requests of the user at once as
there are connections (USER_MAX_CONCURRENT_REQUESTS), or it would refuse most of them.

`--direct` adds a fourth target: the service's app with a route that makes the same page without
GraphQL (bench/page_request.py's `direct`, one uvicorn worker of its own): the service's storage,
geolocation, middleware and encoding, what it costs around GraphQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench.common import bench_environment, free_port, seed_page, serve_service, served
from bench.page_request import DIRECT as DIRECT_ROUTE
from sessions_http.rest import SESSIONS_DOCUMENT

ROUTE = "/v1/users/me/sessions"
BASELINE, REST, GRAPHQL, DIRECT = "baseline", "REST", "GraphQL", "direct"


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    method: str = "GET"
    body: bytes = b""

    def request(self, cookie: str) -> bytes:
        """The raw HTTP/1.1 request, for the Python load generator."""
        rest = self.url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        head = [f"{self.method} /{path} HTTP/1.1", f"Host: {host}", f"Cookie: {cookie}"]
        if self.body:
            head += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True)
class Result:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int
    failed: int  # answers other than 200, and socket errors


# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> Result:
    def grab(pattern: str) -> str:
        match = re.search(pattern, output)
        if match is None:
            raise ValueError(f"wrk's output has no {pattern!r}:\n{output}")
        return match[1]

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(
        rps=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50=_ms(grab(r"\s50%\s+(\S+)")),
        p99=_ms(grab(r"\s99%\s+(\S+)")),
        requests=int(grab(r"(\d+) requests in")),
        failed=(int(non_2xx[1]) if non_2xx else 0)
        + (sum(int(n) for n in errors.groups()) if errors else 0),
    )


def run_wrk(target: Target, cookie: str, connections: int, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        # A Lua long string holds the JSON body as it is.
        script.write(f'wrk.method = "{target.method}"\n')
        script.write(f"wrk.headers['Cookie'] = [==[{cookie}]==]\n")
        if target.body:
            script.write(f"wrk.body = [==[{target.body.decode()}]==]\n")
            script.write("wrk.headers['Content-Type'] = 'application/json'\n")
        script.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
        done = subprocess.run(
            [*command, "-s", script.name, target.url], capture_output=True, text=True, check=True
        )
    return parse_wrk(done.stdout)


# -- the Python load generator -----------------------------------------------------------------


async def _connection(
    host: str, port: int, request: bytes, until: float, times: list[float], failed: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError(f"an answer without Content-Length: {head!r}")
            await reader.readexactly(int(length[1]))
            times.append(time.perf_counter() - started)
            if head[9:12] != b"200":
                failed.append(1)
    finally:
        writer.close()


async def _load(target: Target, cookie: str, connections: int, seconds: float) -> Result:
    host, _, port = target.url.split("/")[2].partition(":")
    request = target.request(cookie)
    times: list[float] = []
    failed: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_connection(host, int(port), request, until, times, failed) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    ms = sorted(t * 1000 for t in times)
    return Result(
        rps=len(ms) / elapsed,
        p50=ms[len(ms) // 2],
        p99=ms[max(0, int(len(ms) * 0.99) - 1)],
        requests=len(ms),
        failed=len(failed),
    )


def run_python(target: Target, cookie: str, connections: int, seconds: float) -> Result:
    return asyncio.run(_load(target, cookie, connections, seconds))


# -- the run -----------------------------------------------------------------------------------


@contextmanager
def serve_baseline(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
    with served(command, env, f"http://127.0.0.1:{port}", ROUTE) as url:
        yield url


@contextmanager
def serve_direct(env: dict[str, str], wanted: bool) -> Iterator[str | None]:
    """bench/page_request.py's direct app, when wanted."""
    if not wanted:
        yield None
        return
    port = free_port()
    command = [sys.executable, "-m", "bench.page_request", "--serve", str(port)]
    with served(command, env, f"http://127.0.0.1:{port}", "/healthz") as url:
        yield url


def check_bodies(targets: dict[str, Target], cookie: str) -> None:
    """Warms the geo cache through the service, then checks what each target answers."""
    headers = {"cookie": cookie}
    with httpx.Client(headers=headers, timeout=30) as client:
        rest = client.get(targets[REST].url)
        rest.raise_for_status()
        for _ in range(100):  # the service caches geolocations just after answering
            time.sleep(0.05)
            if client.get(targets[BASELINE].url).content == client.get(targets[REST].url).content:
                break
        else:
            raise RuntimeError("the baseline's body differs from the REST body")
        graphql = client.post(
            targets[GRAPHQL].url,
            content=targets[GRAPHQL].body,
            headers={"content-type": "application/json"},
        )
        graphql.raise_for_status()
        if "errors" in graphql.json():
            raise RuntimeError(f"GraphQL answered errors: {graphql.text[:500]}")
        if DIRECT in targets and client.get(targets[DIRECT].url).content != rest.content:
            raise RuntimeError("the direct route's body differs from the REST body")
    print(
        f"bodies: REST and baseline identical ({len(rest.content)} bytes); GraphQL without errors"
    )


def run_rounds(
    targets: dict[str, Target], cookie: str, args: argparse.Namespace
) -> dict[str, list[Result]]:
    load = run_wrk if args.loader == "wrk" else run_python
    names = [name for name in (REST, GRAPHQL, DIRECT, BASELINE) if name in targets]
    for name in names:  # warm-up, not counted
        load(targets[name], cookie, args.connections, args.warmup)
    results: dict[str, list[Result]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            result = load(targets[name], cookie, args.connections, args.seconds)
            results[name].append(result)
            print(
                f"round {round_ + 1}  {name:8} {result.rps:8.1f} req/s  p50 {result.p50:7.2f} ms"
                f"  p99 {result.p99:7.2f} ms  ({result.requests} requests, {result.failed} failed)",
                flush=True,
            )
    return results


def summarise(results: dict[str, list[Result]]) -> None:
    base = results[BASELINE]
    print("\nmedians over the rounds (ratios: to the baseline of the same round, min-max)")
    for name, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50 for r in runs)
        p99 = statistics.median(r.p99 for r in runs)
        line = f"{name:8} {rps:8.1f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
        if name != BASELINE:
            line += "  req/s " + _ratios([r.rps / b.rps for r, b in zip(runs, base, strict=True)])
            line += "  p99 " + _ratios([r.p99 / b.p99 for r, b in zip(runs, base, strict=True)])
        print(line)


def _ratios(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--direct", action="store_true", help="also the page without GraphQL")
    args = parser.parse_args()
    if args.loader == "auto":
        args.loader = "wrk" if shutil.which("wrk") else "python"
    return args


def main() -> None:
    args = arguments()
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f}; loader {args.loader}, {args.connections} connections, "
        f"{args.rounds} rounds of {args.seconds:g} s"
    )
    with bench_environment() as env:
        cookie = f"psession={asyncio.run(seed_page(env))}"
        limit = {"USER_MAX_CONCURRENT_REQUESTS": str(max(args.connections, 4))}
        with (
            serve_service(env, **limit) as service,
            serve_baseline(env) as baseline,
            serve_direct({**env, **limit}, args.direct) as direct,
        ):
            body = {"query": SESSIONS_DOCUMENT, "variables": {"historyLimit": 50}}
            targets = {
                REST: Target(REST, service + ROUTE),
                GRAPHQL: Target(GRAPHQL, service + "/graphql", "POST", json.dumps(body).encode()),
                BASELINE: Target(BASELINE, baseline + ROUTE),
            }
            if direct is not None:
                targets[DIRECT] = Target(DIRECT, direct + DIRECT_ROUTE)
            check_bodies(targets, cookie)
            summarise(run_rounds(targets, cookie, args))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Prometheus metrics for the HTTP side, and the `/metrics` endpoint that exposes every metric
of the process (the others live beside what they count: `graph/context.py` counts cookies checked,
`graph/fairness.py` refused requests, `sessions_geo/metrics.py` geolocation).

Labels never carry user data: routes are path templates, never raw paths.

With several worker processes (`serve --workers N`), each worker counts on its own; when
PROMETHEUS_MULTIPROC_DIR names a directory (`serve` sets one up by itself), `/metrics` adds up
all workers' files there.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_http.access import HEADER, log_access, request_id_of
from sessions_http.asgi import HttpMiddleware
from sessions_http.responses import NO_STORE

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "sessions_api_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
DURATION = Histogram(
    "sessions_api_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# The status counted for a request whose client disconnected before sending all of it (nginx's
# "client closed request"); no answer with it reaches anyone.
CLIENT_CLOSED_REQUEST = 499

# Paths that match no route (scanners, typos) share one label, and so do unusual methods (some
# HTTP parsers pass any token through), so clients cannot grow the number of series.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where a request's route template is kept in its scope's state (beside access.py's request id).
ROUTE_STATE = "route"
# Paths whose route template is remembered (the service's own, and the latest others).
ROUTES_REMEMBERED = 1024
LONGEST_REMEMBERED = 256  # characters; longer paths are matched each time


class RequestMetrics(HttpMiddleware):
    """Counts, times and logs every HTTP request (access.py), under its request id. Outermost,
    so refusals by other middleware (CORS, the origin check) and our own failures (500) are
    counted too."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        super().__init__(app)
        self.routes = routes
        # A route's template depends on the path alone (and the root path it is served under):
        # each is matched once, not on every request. Bounded, as clients choose paths.
        self._template = functools.lru_cache(maxsize=ROUTES_REMEMBERED)(self._match)
        # (method, route, status) -> its counter, and (method, route) -> its histogram.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        echoed = (HEADER, request_id_of(scope).encode("ascii"))
        # Before the app runs: a Mount rewrites the scope's paths as it hands the request on.
        route = self._route(scope)
        # For the server span's name, when traces are on (tracing.py).
        scope["state"][ROUTE_STATE] = route
        method = scope["method"] if scope["method"] in METHODS else "other"
        # A response that fails after it has started is counted with the status it sent.
        status = 500  # if the app fails before it starts a response

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - started
            self._counter(method, route, status).inc()
            self._histogram(method, route).observe(seconds)
            log_access(method, route, status, seconds)

    def _counter(self, method: str, route: str, status: int) -> Any:
        # The labelled children, kept: labels() takes a lock and builds a key on every call.
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(method, route, str(status))
        return counter

    def _histogram(self, method: str, route: str) -> Any:
        key = (method, route)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = DURATION.labels(method, route)
        return histogram

    def _route(self, scope: Scope) -> str:
        root_path, path = scope.get("root_path", ""), scope["path"]
        if len(path) + len(root_path) > LONGEST_REMEMBERED:
            return self._match(root_path, path)
        return str(self._template(root_path, path))

    def _match(self, root_path: str, path: str) -> str:
        scope = {"type": "http", "root_path": root_path, "path": path, "method": "GET"}
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", UNMATCHED))
        return UNMATCHED


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


async def metrics_endpoint(request: Request) -> Response:
    return Response(
        generate_latest(_registry()),
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        headers=NO_STORE,
    )

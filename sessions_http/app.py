"""The Starlette app: GraphQL (+ GraphiQL, and subscriptions over WebSocket), the v1 REST
routes, health, metrics, static files.

Read top to bottom: the app, then what it is made of (routes, middleware, the lifespan that
opens its resources, the handlers that answer what a route raised)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from importlib import resources as package_files

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import sessions_spans
from sessions_config.logs import configure
from sessions_config.resources import open_resources
from sessions_config.settings import Settings, get_settings
from sessions_events.live import LiveEvents
from sessions_events.workers import event_workers
from sessions_http import admin, health, openapi, page, rest
from sessions_http.admin_auth import FailedAttempts
from sessions_http.admin_boundary import ListenerSplit, PublicCors
from sessions_http.graphql_endpoint import graphql_endpoint
from sessions_http.live import live_endpoint
from sessions_http.metrics import CLIENT_CLOSED_REQUEST, RequestMetrics, metrics_endpoint
from sessions_http.origin_check import AllowedOrigins, OriginCheck
from sessions_http.request_timeout import RequestTimeout
from sessions_http.responses import (
    GRAPHQL_PATH,
    MESSAGE_TRY_LATER,
    HttpError,
    answer_error,
    error_response,
)
from sessions_rules import device
from store.errors import describe_outage, outage_of

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    if not logging.getLogger().handlers:
        # A process whose logging nobody set up: a worker of `serve --workers N` (uvicorn
        # starts each afresh), or uvicorn run by hand. Without this, its access lines and
        # warnings would be lost or bare.
        configure(settings.log_level, settings.log_format)
    routes = _routes()
    spans = _server_spans()
    app = Starlette(
        routes=routes,
        lifespan=_lifespan(settings, traced=bool(spans)),
        exception_handlers={
            HttpError: answer_error,
            HTTPException: answer_error,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
        middleware=_middleware(settings, routes, spans),
    )
    # No redirect from `/path/` to `/path`: a client following it would repeat the method, and
    # `DELETE /v1/users/me/sessions/` (an empty id) would become "revoke all others".
    app.router.redirect_slashes = False
    return app


def _routes() -> list[BaseRoute]:
    static = StaticFiles(directory=str(package_files.files("sessions_http") / "static"))
    return [
        Route("/", page.home, methods=["GET"]),
        Route("/favicon.svg", page.favicon, methods=["GET"]),
        Route("/favicon.ico", page.favicon, methods=["GET"]),
        Route(GRAPHQL_PATH, graphql_endpoint, methods=["GET", "POST"]),
        # Subscriptions: the same path, over WebSocket (sessions_http/live.py).
        WebSocketRoute(GRAPHQL_PATH, live_endpoint),
        Route("/v1/users/me/sessions", rest.sessions_collection, methods=["GET", "DELETE"]),
        Route("/v1/users/me/sessions/{session_id}", rest.revoke_session, methods=["DELETE"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/docs", openapi.docs, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Mount("/static", app=static, name="static"),
        *admin.routes(),
    ]


def _middleware(
    settings: Settings, routes: list[BaseRoute], spans: list[Middleware]
) -> list[Middleware]:
    """Outermost first."""
    admin_address = settings.admin_address
    return [
        # Counts every answer, including the refusals of those below.
        Middleware(RequestMetrics, routes=routes),
        # A server span per request, while traces are on.
        *spans,
        # With ADMIN_LISTEN, the admin API on its listener only.
        Middleware(ListenerSplit, admin_port=admin_address[1] if admin_address else None),
        # The whole request, past every storage bound: 503 rather than a hang.
        Middleware(RequestTimeout, seconds=settings.request_timeout),
        # Answers CORS preflights for the allowed origins; never for the admin API.
        Middleware(
            PublicCors,
            allow_origins=settings.allowed_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["content-type", "accept"],
            max_age=600,
        ),
        Middleware(OriginCheck, allowed_origins=settings.allowed_origins),
    ]


def _server_spans() -> list[Middleware]:
    """The middleware of the server spans when traces are on (tracing.py, which this turns on
    for the process if the OTEL_* variables ask for it); none without the `otel` extra. Traces
    are optional: whatever keeps them from starting is one line, and the app serves without."""
    if not (sessions_spans.enabled() or sessions_spans.exporters_asked_for(os.environ)):
        return []  # tracing.py not even imported: no OTEL_* value can matter
    try:
        from sessions_http import tracing  # here: OpenTelemetry is an optional extra

        on = tracing.start()
    except sessions_spans.BadConfiguration as exc:
        log.error("traces off: bad configuration: %s", exc)
        return []
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("opentelemetry"):
            log.warning("OTEL_* asks for traces, but they need: pip install 'sessions-api[otel]'")
        else:
            # Say, an OpenTelemetry of another version than tracing.py was written for.
            log.error("traces off: they could not start: %s: %s", type(exc).__name__, exc)
        return []
    return [Middleware(tracing.ServerSpans)] if on else []


def traces_problem() -> str | None:
    """What is wrong with the OTEL_* variables, if they ask for traces (`serve` says it and
    stops, before any worker starts); None if nothing is. Everything traces are made of is made
    once, then shut down. An OpenTelemetry that cannot be imported is left to _server_spans,
    which serves without traces."""
    if not sessions_spans.exporters_asked_for(os.environ):
        return None
    try:
        from sessions_http import tracing

        tracing.check()
    except sessions_spans.BadConfiguration as exc:
        return str(exc)
    except ImportError:
        pass
    return None


@asynccontextmanager
async def _traces_stopped(traced: bool) -> AsyncIterator[None]:
    """At the app's end (after its resources, whose last lookups can end in spans), the traces
    it started are stopped: their last spans sent, within a bound (tracing.stop)."""
    try:
        yield
    finally:
        if traced:
            from sessions_http import tracing

            await asyncio.to_thread(tracing.stop)


def _lifespan(
    settings: Settings, *, traced: bool
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The user-agent rules compile on first use; do it before taking traffic.
        await asyncio.to_thread(device.warm_up)
        rest.compile_documents()
        async with _traces_stopped(traced), open_resources(settings) as resources:
            app.state.resources = resources
            app.state.origins = AllowedOrigins(settings.allowed_origins)
            app.state.admin_attempts = FailedAttempts(settings.admin_auth_failures_per_minute)
            # Live updates: it listens for events once the first subscriber comes.
            app.state.live = live = LiveEvents(
                resources.store, resources.geo, settings, listen_url=settings.database_url
            )
            log.info(
                "ready: geolocation provider %s, Redis key prefix %r",
                resources.geo.provider.name,
                settings.redis_key_prefix,
            )
            # What start-up made (the schema, the plans, the user-agent rules, the pools) lives
            # as long as the app: out of the cycle collector's way. Else each full pass walks
            # all of it, a pause of tens of milliseconds for every request in flight.
            gc.collect()
            gc.freeze()
            async with event_workers(resources) if settings.event_workers else nullcontext():
                try:
                    yield
                finally:
                    await live.aclose()
                    gc.unfreeze()

    return lifespan


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client went away before its request was complete (a body cut short): its mistake,
    # not our failure, and anyone can repeat it, so no error line. Nobody reads this answer;
    # /metrics counts its status.
    log.debug("%s %s: the client disconnected mid-request", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _unexpected(request: Request, exc: Exception) -> Response:
    dependency = outage_of(exc)
    if dependency is not None:
        # Postgres or Redis did not answer a route that reads them itself (the admin API;
        # GraphQL and REST answer outages on their own): 503, logged in one line.
        log.warning(
            "%s %s: %s unavailable: %s",
            request.method,
            request.url.path,
            dependency,
            describe_outage(exc),
        )
        return error_response(
            request.scope, 503, "unavailable", MESSAGE_TRY_LATER, {"Retry-After": "1"}
        )
    # A bug outside GraphQL execution (storage failures inside it are answered there).
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = "The request could not be completed."
    return error_response(request.scope, 500, "internal", message)

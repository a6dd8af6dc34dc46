"""Traces, with OpenTelemetry: all of the service's OpenTelemetry is here. It needs the `otel`
extra, and app.py imports it only if that is installed; traces are on only when the OTEL_*
variables ask for them (`exporters_asked_for`). Off, nothing is instrumented and no span is made.

On, each process (each `serve --workers` worker) sets up once: the SDK's provider, with the
resource, sampler and exporters of the OTEL_* variables; the instrumentations of asyncpg, redis
and httpx; the manual spans of sessions_spans; and, per app, `ServerSpans`.

Secrets: header values that can carry a session token or an admin key (Cookie, Set-Cookie,
Authorization) are recorded as "[REDACTED]" even when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*
ask for every header; no URL keeps its query string; asyncpg spans have the SQL text without
its parameters; redis spans have each command with its arguments replaced by `?`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    get_custom_headers,
)
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Receive, Scope, Send

import sessions_spans
from sessions_http.asgi import HttpMiddleware
from sessions_http.metrics import METHODS, ROUTE_STATE, UNMATCHED

log = logging.getLogger(__name__)

SERVICE = "sessions-api"
# The server span's attribute that joins it to the request's log lines (sessions_http/access.py).
REQUEST_ID = "sessions_api.request_id"
# Any of these asks for traces; OTEL_SDK_DISABLED=true overrides them.
_ASKING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
# OTLP's protocols -> the exporter's entry point; the `otel` extra ships the first.
_OTLP = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
# Header values recorded as "[REDACTED]" whatever the capture variables say (names are regexes,
# matched anywhere in the header's name, case aside).
SECRET_HEADERS = ("cookie", "set-cookie", "authorization", "proxy-authorization")
# Probes and scrapes make no traces, unless OTEL_PYTHON_(ASGI_)EXCLUDED_URLS says otherwise.
_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"

_provider: TracerProvider | None = None


def exporters_asked_for(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (`otlp` when only an endpoint is set); none when
    no variable asks for traces, or OTEL_SDK_DISABLED is true, or the exporter is `none`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    if not any(environ.get(name, "").strip() for name in _ASKING):
        return []
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    return [name.strip() for name in names.split(",") if name.strip() not in ("", "none")]


def exporter(name: str, environ: Mapping[str, str]) -> SpanExporter | None:
    """The exporter of that name (`otlp`, `console`, or another one's entry point), made from
    the OTEL_EXPORTER_* variables; None (and an error line) if it cannot be had."""
    entry = name
    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        entry = _OTLP.get(protocol, "")
        if not entry:
            log.error("traces: unknown OTLP protocol %r; that exporter is left out", protocol)
            return None
    found = entry_points(group="opentelemetry_traces_exporter", name=entry)
    if not found:
        log.error("traces: no exporter %r is installed; that exporter is left out", entry)
        return None
    made: SpanExporter = next(iter(found)).load()()
    return made


class InRequests(Sampler):
    """Spans within requests only: a span without a parent starts a trace only if it is a
    request's server span. Work outside requests (the event workers poll Postgres twice a
    second, the expiry sweep, webhook deliveries, live updates) makes no spans. Within a
    request, the sampler OTEL_TRACES_SAMPLER names decides."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            if kind is not SpanKind.SERVER:
                return SamplingResult(Decision.DROP)
        elif not parent.is_remote and not parent.trace_flags.sampled:
            # Under a span left out (above, or by the sampler): never an orphan.
            return SamplingResult(Decision.DROP)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"InRequests{{{self._sampler.get_description()}}}"


def new_provider() -> TracerProvider:
    """A provider with the service's resource (OTEL_SERVICE_NAME, else "sessions-api", and
    OTEL_RESOURCE_ATTRIBUTES) and sampler; no exporter yet."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    # The sampler of OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, read as the SDK reads it.
    return TracerProvider(sampler=InRequests(_get_from_env_or_default()), resource=resource)


def start() -> bool:
    """Turns traces on for this process when the OTEL_* variables ask for them (the first call
    decides; app.py calls it for each app). True while they are on."""
    if _provider is not None:
        return True
    exporters = [
        made
        for name in exporters_asked_for(os.environ)
        if (made := exporter(name, os.environ)) is not None
    ]
    if not exporters:
        return False
    provider = new_provider()
    for made in exporters:
        provider.add_span_processor(BatchSpanProcessor(made))
    trace.set_tracer_provider(provider)
    switch_on(provider)
    log.info(
        "traces on: service %s, exporters %s, sampler %s",
        provider.resource.attributes.get(SERVICE_NAME),
        ", ".join(type(made).__name__ for made in exporters),
        provider.sampler.get_description(),
    )
    return True


def switch_on(provider: TracerProvider) -> None:
    """Spans into `provider`: the instrumentations, our own spans, and the ServerSpans of apps
    made from now on. Tests turn traces on and off with this and `switch_off`."""
    global _provider
    _provider = provider
    # Parameters could carry anything a query is given: never recorded. (Its __init__ has no
    # annotations.)
    asyncpg = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
    asyncpg.instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider, async_request_hook=_client_request
    )
    tracer = provider.get_tracer("sessions_api")

    def start_span(
        name: str, attributes: sessions_spans.Attributes | None
    ) -> AbstractContextManager[sessions_spans.Span]:
        return tracer.start_as_current_span(name, attributes=attributes)

    sessions_spans.install(start_span)


def switch_off() -> None:
    """Undoes `switch_on` (the provider is the caller's to shut down)."""
    global _provider
    sessions_spans.install(None)
    HTTPXClientInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    _provider = None


def _without_query(span: trace.Span) -> None:
    """Takes the query string out of the URL attributes the HTTP instrumentations set (those of
    the conventions old and new), as the access log leaves it out: the ip-api key travels in
    one, and a client may put anything in its own (even `?psession=`, for `#psession=`)."""
    if not isinstance(span, ReadableSpan):
        return
    attributes = span.attributes or {}
    for key in ("http.url", "http.target", "url.full"):
        value = attributes.get(key)
        if isinstance(value, str) and ("?" in value or "#" in value):
            span.set_attribute(key, re.split("[?#]", value, maxsplit=1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


async def _client_request(span: trace.Span, request: RequestInfo) -> None:
    _without_query(span)


def _server_request(span: trace.Span, scope: Scope) -> None:
    _without_query(span)


class ServerSpans(HttpMiddleware):
    """The server span of each HTTP request, made by OpenTelemetry's ASGI middleware (not for
    WebSocket connections: a subscription's would last hours). It runs inside RequestMetrics,
    which chose the request's id and route: the span is named after the route template, never
    the path, and carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        excluded = (
            os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS")
            or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
            or _EXCLUDED_URLS
        )
        sanitized = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
        self._traced = OpenTelemetryMiddleware(
            app,
            excluded_urls=excluded,
            default_span_details=_name_and_attributes,
            server_request_hook=_server_request,
            tracer_provider=_provider,
            http_capture_headers_sanitize_fields=[*sanitized, *SECRET_HEADERS],
            # A span for each ASGI message of the body is noise, and costs.
            exclude_spans=["receive", "send"],
        )

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._traced(scope, receive, send)


def _name_and_attributes(scope: Scope) -> tuple[str, dict[str, str]]:
    """`GET /v1/users/me/sessions/{session_id}`, with the route and the request's id."""
    state = scope.get("state") or {}
    method = scope["method"] if scope["method"] in METHODS else "HTTP"
    attributes = {REQUEST_ID: str(state.get("request_id", ""))}
    route = state.get(ROUTE_STATE, UNMATCHED)
    if route == UNMATCHED:
        return method, attributes
    return f"{method} {route}", {**attributes, "http.route": route}

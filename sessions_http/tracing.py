"""Traces, with OpenTelemetry: all of the service's OpenTelemetry is here. It needs the `otel`
extra, and app.py imports it only if that is installed and the OTEL_* variables ask for traces
(sessions_spans.exporters_asked_for). Off, nothing is instrumented and no span is made.

On, each process (each `serve --workers` worker) sets up once (`start`): the SDK's provider, with
the resource, sampler and exporters of the OTEL_* variables; the instrumentations of asyncpg,
redis and httpx; the manual spans of sessions_spans; and, per app, `ServerSpans`. Every OTEL_*
value is read and checked there, at once (`check` does the same for `serve`, before it starts):
a bad one is a BadConfiguration, with nothing left half on; none can fail later, in a request.

Secrets: header values that can carry a session token or an admin key (Cookie, Set-Cookie,
Authorization) are recorded as "[REDACTED]" even when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*
ask for every header; no URL keeps its query string; the server span has the route template,
never the path (which holds session and user ids); asyncpg spans have the SQL text without its
parameters; redis spans have each command with its arguments replaced by `?`. No outgoing request
carries the trace's context (`ExtractOnly`): the service calls no service of its own, only
third parties (ip-api, customers' webhook endpoints).
"""

from __future__ import annotations

from sessions_spans import BadConfiguration

try:
    # Imported, it reads OTEL_PROPAGATORS and raises ValueError on a name not installed (so
    # does every instrumentation below, which import it).
    from opentelemetry import propagate
except ValueError as exc:
    raise BadConfiguration("OTEL_PROPAGATORS", str(exc)) from None

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    ExcludeList,
    get_custom_headers,
    parse_excluded_urls,
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
# OTLP's protocols -> the exporter's entry point; the `otel` extra ships the first.
_OTLP = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
# Header values recorded as "[REDACTED]" whatever the capture variables say (names are regexes,
# matched anywhere in the header's name, case aside).
SECRET_HEADERS = ("cookie", "set-cookie", "authorization", "proxy-authorization")
# Probes and scrapes make no traces, unless OTEL_PYTHON_(ASGI_)EXCLUDED_URLS says otherwise.
_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"
_EXCLUDED_VARIABLES = ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
# Header-name regexes the instrumentations compile on each request, so checked at start.
_CAPTURE_PREFIX = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"
# OTEL_TRACES_SAMPLER's samplers without an argument (the SDK's names), and with a ratio.
_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": ParentBased(ALWAYS_ON),
    "parentbased_always_off": ParentBased(ALWAYS_OFF),
}
_RATIO_SAMPLERS = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}
# How long stopping waits for the last spans to be sent: the OTLP exporter would wait 10 s (its
# timeout) for an unreachable collector, and keep `serve` from exiting that long.
SHUTDOWN_SECONDS = 2.0

_provider: TracerProvider | None = None  # while traces are on
_started: TracerProvider | None = None  # the one `start` made, for `stop` to shut down
_server: ServerConfig | None = None  # while traces are on
_switched_off: TextMapPropagator | None = None  # the global propagator before switch_on


@dataclass(frozen=True)
class ServerConfig:
    """What ServerSpans is made with, read from the OTEL_* variables and checked at start
    (Starlette makes middleware on the first request, too late for a bad value to stop `serve`)."""

    excluded: ExcludeList
    sanitized: list[str]


@contextmanager
def _blame(what: str) -> Iterator[None]:
    """Any failure within is a BadConfiguration of `what`, or of the variable its message starts
    with."""
    try:
        yield
    except BadConfiguration:
        raise
    except Exception as exc:
        why = str(exc) or type(exc).__name__
        if named := re.match(r"(OTEL_[A-Z0-9_]+) ", why):  # the SDK's "OTEL_X must be..."
            what, why = named[1], why.removeprefix(named[0])
        raise BadConfiguration(what, why) from None


def exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """The exporter of that name (`otlp`, `console`, or another one's entry point), made from
    the OTEL_EXPORTER_* variables."""
    entry, blamed = name, "OTEL_TRACES_EXPORTER"
    if name == "otlp":
        # The traces' own variable, else the general one.
        variables = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        blamed = next((v for v in variables if environ.get(v, "").strip()), variables[1])
        protocol = environ.get(blamed, "").strip() or "http/protobuf"
        entry = _OTLP.get(protocol, "")
        if not entry:
            raise BadConfiguration(blamed, f"unknown OTLP protocol {protocol!r}")
    found = entry_points(group="opentelemetry_traces_exporter", name=entry)
    if not found:
        raise BadConfiguration(blamed, f"no exporter {entry!r} is installed")
    with _blame(f"OTEL_EXPORTER_* ({name})"):
        made = next(iter(found)).load()()
        if not isinstance(made, SpanExporter):
            raise TypeError(f"{entry!r} is not a span exporter")
    return made


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler of OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, by the SDK's names; a
    name or ratio the SDK would replace by its default (with a warning) is refused."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name in _SAMPLERS:
        return _SAMPLERS[name]
    if name not in _RATIO_SAMPLERS:
        known = ", ".join([*_SAMPLERS, *_RATIO_SAMPLERS])
        raise BadConfiguration("OTEL_TRACES_SAMPLER", f"unknown sampler {name!r} (one of {known})")
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
    with _blame("OTEL_TRACES_SAMPLER_ARG"):
        return _RATIO_SAMPLERS[name](float(argument))


def propagator(environ: Mapping[str, str]) -> TextMapPropagator:
    """The propagators OTEL_PROPAGATORS names (default `tracecontext,baggage`; `none`: none), as
    the API reads them, but read now rather than when OpenTelemetry was imported."""
    names = [
        name.strip()
        for name in (environ.get("OTEL_PROPAGATORS") or "tracecontext,baggage").split(",")
        if name.strip()
    ]
    if "none" in (name.lower() for name in names):
        return CompositePropagator([])
    made = []
    for name in names:
        found = entry_points(group="opentelemetry_propagator", name=name)
        if not found:
            raise BadConfiguration("OTEL_PROPAGATORS", f"no propagator {name!r} is installed")
        with _blame("OTEL_PROPAGATORS"):
            made.append(next(iter(found)).load()())
    return CompositePropagator(made)


class ExtractOnly(TextMapPropagator):
    """A propagator that reads the caller's context (`traceparent`…) from a request, and writes
    none into the service's own requests: those go to third parties (ip-api, customers' webhook
    endpoints), to whom a trace id would be a handle on our traces, and baggage a leak."""

    def __init__(self, propagator: TextMapPropagator) -> None:
        self._propagator = propagator

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        extracted = self._propagator.extract(carrier, context, getter)
        # With no propagator (`none`), the composite hands back the context it was given, None
        # by default: the ASGI middleware would make that the current context, and fail.
        return Context() if extracted is None else extracted

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        pass

    @property
    def fields(self) -> set[str]:
        return set()


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


def new_provider(*, shutdown_on_exit: bool = True) -> TracerProvider:
    """A provider with the service's resource (OTEL_SERVICE_NAME, else "sessions-api", and
    OTEL_RESOURCE_ATTRIBUTES), sampler and span limits (OTEL_*_LIMIT); no exporter yet."""
    with _blame("OTEL_RESOURCE_ATTRIBUTES"):
        resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    made = InRequests(sampler(os.environ))
    with _blame("OTEL_*_LIMIT"):
        return TracerProvider(sampler=made, resource=resource, shutdown_on_exit=shutdown_on_exit)


def server_config() -> ServerConfig:
    """ServerSpans' settings from the OTEL_* variables, each regex compiled now."""
    variable = next((name for name in _EXCLUDED_VARIABLES if os.environ.get(name)), "")
    with _blame(variable or _EXCLUDED_VARIABLES[-1]):
        excluded = parse_excluded_urls(os.environ.get(variable) or _EXCLUDED_URLS)
    sanitize = OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS
    sanitized = [*get_custom_headers(sanitize), *SECRET_HEADERS]
    for name in sorted(name for name in os.environ if name.startswith(_CAPTURE_PREFIX)):
        with _blame(name):
            # As the instrumentations join them (util.http's SanitizeValue).
            re.compile("|".join(get_custom_headers(name)), re.IGNORECASE)
    return ServerConfig(excluded, sanitized)


def _made(*, shutdown_on_exit: bool = True) -> TracerProvider | None:
    """A provider with a batch processor for each exporter the variables ask for; None when they
    ask for none. A bad value raises BadConfiguration, with whatever was made shut down."""
    names = sessions_spans.exporters_asked_for(os.environ)
    if not names:
        return None
    provider = new_provider(shutdown_on_exit=shutdown_on_exit)
    try:
        for name in names:
            made = exporter(name, os.environ)
            try:
                with _blame("OTEL_BSP_*"):
                    processor = BatchSpanProcessor(made)
            except BadConfiguration:
                made.shutdown()
                raise
            provider.add_span_processor(processor)
    except BaseException:
        provider.shutdown()
        raise
    return provider


def _incoming_and_server(provider: TracerProvider) -> tuple[TextMapPropagator, ServerConfig]:
    """The propagator of OTEL_PROPAGATORS and the server spans' settings, with a ServerSpans made
    from them once, as Starlette will on the first request."""
    incoming = propagator(os.environ)
    server = server_config()
    with _blame("OTEL_INSTRUMENTATION_HTTP_*"):
        ServerSpans(_nothing, provider=provider, config=server)
    return incoming, server


def check() -> None:
    """Makes all that `start` would from the OTEL_* variables, then shuts it down: a bad value
    raises BadConfiguration here (`serve` checks before it starts any worker)."""
    provider = _made(shutdown_on_exit=False)
    if provider is None:
        return
    try:
        _incoming_and_server(provider)
    finally:
        provider.shutdown()


def start() -> bool:
    """Turns traces on for this process when the OTEL_* variables ask for them (the first call
    decides; app.py calls it for each app). True while they are on. A bad value raises
    BadConfiguration; on any failure, nothing is left on."""
    global _started
    if _provider is not None:
        return True
    provider = _made()
    if provider is None:
        return False
    try:
        switch_on(provider)
    except BaseException:
        provider.shutdown()
        raise
    _started = provider
    trace.set_tracer_provider(provider)
    log.info(
        "traces on: service %s, sampler %s",
        provider.resource.attributes.get(SERVICE_NAME),
        provider.sampler.get_description(),
    )
    return True


def stop(seconds: float = SHUTDOWN_SECONDS) -> None:
    """Undoes `start` (app.py calls it as the app stops): traces off, and the provider shut down,
    sending the spans its batches still hold within `seconds`; those not sent by then are lost."""
    global _started
    provider, _started = _started, None
    if provider is None:
        return
    switch_off()
    if not shut_down(provider, seconds):
        log.warning("traces: the last spans were not sent within %.1f s of stopping", seconds)


def shut_down(provider: TracerProvider, seconds: float) -> bool:
    """provider.shutdown(), waited for at most `seconds` (its own bound is the exporters' timeout,
    30 s for a batch); True if it finished. Its thread is a daemon: nor does it hold up the exit
    (where the provider's own shutdown at exit finds its processors shut down already)."""
    thread = threading.Thread(target=provider.shutdown, name="traces-shutdown", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def switch_on(provider: TracerProvider) -> None:
    """Spans into `provider`: the instrumentations, our own spans, and the ServerSpans of apps
    made from now on; the propagator of OTEL_PROPAGATORS, extracting only. Tests turn traces on
    and off with this and `switch_off`. On failure, nothing is left on."""
    global _provider, _server, _switched_off
    incoming, server = _incoming_and_server(provider)
    try:
        _provider, _server = provider, server
        _switched_off = propagate.get_global_textmap()
        propagate.set_global_textmap(ExtractOnly(incoming))
        # Parameters could carry anything a query is given: never recorded. (Its __init__ has
        # no annotations.)
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
    except BaseException:
        switch_off()
        raise


def switch_off() -> None:
    """Undoes `switch_on`, or as much of it as was done (the provider is the caller's to shut
    down)."""
    global _provider, _server, _switched_off
    sessions_spans.install(None)
    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (HTTPXClientInstrumentor(), RedisInstrumentor(), asyncpg):
        # Only those on (else each says it was not, in a warning line).
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    if _switched_off is not None:
        propagate.set_global_textmap(_switched_off)
    _provider = _server = _switched_off = None


def _without_query(span: trace.Span) -> None:
    """Takes the query string out of the URL attributes of an HTTP client span (those of the
    conventions old and new), as the access log leaves it out: the ip-api key travels in one."""
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


# The server span's attributes that would hold the request's path (conventions old and new): it
# can hold a session id, a user id, anything a client sends. They get the route template instead
# (empty for a path no route takes), as the access log has it; never the query string.
_PATHS = ("http.target", "url.path")
_URLS = ("http.url", "url.full")


def _server_request(span: trace.Span, scope: Scope) -> None:
    if not isinstance(span, ReadableSpan):
        return
    route = (scope.get("state") or {}).get(ROUTE_STATE, UNMATCHED)
    path = "" if route == UNMATCHED else str(route)
    attributes = span.attributes or {}
    for key in _PATHS:
        if key in attributes:
            span.set_attribute(key, path)
    for key in _URLS:
        if isinstance(url := attributes.get(key), str):
            parts = urlsplit(url)
            span.set_attribute(key, urlunsplit((parts.scheme, parts.netloc, path, "", "")))
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


async def _nothing(scope: Scope, receive: Receive, send: Send) -> None:
    """The app of the ServerSpans made only to check its settings."""


class ServerSpans(HttpMiddleware):
    """The server span of each HTTP request, made by OpenTelemetry's ASGI middleware (not for
    WebSocket connections: a subscription's would last hours). It runs inside RequestMetrics,
    which chose the request's id and route: the span is named after the route template, never
    the path, and carries the id. Made after traces were turned off, it makes no span."""

    def __init__(
        self,
        app: ASGIApp,
        provider: TracerProvider | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        super().__init__(app)
        # Starlette makes it on the first request: with what switch_on checked and kept.
        provider = provider or _provider
        config = config or _server
        self._traced: ASGIApp = app
        if provider is None or config is None:
            return
        self._traced = OpenTelemetryMiddleware(
            app,
            excluded_urls=config.excluded,
            default_span_details=_name_and_attributes,
            server_request_hook=_server_request,
            tracer_provider=provider,
            http_capture_headers_sanitize_fields=config.sanitized,
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

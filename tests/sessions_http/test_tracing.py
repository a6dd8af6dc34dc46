"""Traces (sessions_http/tracing.py): a request is one trace, from its server span down to its
GraphQL operation, Redis, Postgres and geolocation; no span holds a token, a cookie or a key;
and without the OTEL_* variables, or without the `otel` extra, nothing changes.

The apps run in this process, where the exporter is (httpx's ASGI transport). Traces are on for
one test at a time (`traces`): the instrumentations are undone after it, so no other test sees
them; the provider is the session's, as OpenTelemetry's globals allow one per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from starlette.applications import Starlette

import sessions_spans
from sessions_config.resources import Resources
from sessions_config.settings import Settings
from sessions_http import tracing
from sessions_http.app import create_app
from store import admin
from store.tokens import hash_token
from tests.app_client import ROUTE, cookie
from tests.cli_runner import cli_command, cli_env, run_cli
from tests.conftest import Users
from tests.geo_app import fake_ipapi, fresh_ips, make_user
from tests.infra import free_port
from tests.webhook_receiver import WebhookReceiver

MINE = """
query Mine {
  me {
    sessions { id clientIp geo { countryCode } }
    history(first: 5) { edges { node { id geo { countryCode } } } }
  }
}
"""
# An operator asking for every header: the secret ones must still be redacted.
CAPTURE_ALL = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": ".*",
}
REDACTED = ("[REDACTED]",)
# The headers that carry a trace's context (W3C trace context and baggage).
CONTEXT = frozenset({"traceparent", "tracestate", "baggage"})


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """The service's provider (its sampler and resource), exporting into memory at once."""
    made = tracing.new_provider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@pytest.fixture
def traces(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InMemorySpanExporter]:
    """Traces on for this test (the apps it makes have server spans), off after it."""
    for name, value in CAPTURE_ALL.items():
        monkeypatch.setenv(name, value)
    exporter.clear()
    tracing.switch_on(provider)
    try:
        yield exporter
    finally:
        tracing.switch_off()
        exporter.clear()


@asynccontextmanager
async def in_process(
    settings: Settings, *, event_workers: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The app, started in this process; closed (its lookups finished) on leaving."""
    app = create_app(settings.model_copy(update={"event_workers": event_workers}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def wait_for(exporter: InMemorySpanExporter, name: str) -> None:
    """Until a span of that name has ended (a provider's fetch can outlast its request)."""
    deadline = time.monotonic() + 10
    while not any(span.name == name for span in exporter.get_finished_spans()):
        assert time.monotonic() < deadline, f"no {name!r} span"
        await asyncio.sleep(0.01)


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, [span.name for span in spans]
    return named[0]


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of the span's parent, its parent's parent, ... up to the trace's root."""
    by_id = {s.context.span_id: s for s in spans}
    names = []
    parent = span.parent
    while parent is not None:
        found = by_id[parent.span_id]  # a parent that was not exported fails here
        names.append(found.name)
        parent = found.parent
    return names


def texts(span: ReadableSpan) -> Iterator[str]:
    """Everything a span tells an exporter, as text."""
    yield span.name
    for attributes in (
        span.attributes,
        span.resource.attributes,
        *(event.attributes for event in span.events),
        *(link.attributes for link in span.links),
    ):
        for key, value in (attributes or {}).items():
            yield f"{key}={value!r}"
    yield from (event.name for event in span.events)


def assert_nowhere(spans: Sequence[ReadableSpan], *secrets: str) -> None:
    for span in spans:
        for text in texts(span):
            for secret in secrets:
                assert secret not in text, f"{span.name}: {text}"


def assert_one_request(
    spans: Sequence[ReadableSpan], server_name: str, operation_name: str
) -> dict[str, ReadableSpan]:
    """One trace: the server span, the operation under it, and the operation's Redis, Postgres
    and geolocation spans; nothing else was exported (work outside requests is left out)."""
    server = only(spans, server_name)
    assert server.kind is SpanKind.SERVER and server.parent is None
    assert {span.context.trace_id for span in spans} == {server.context.trace_id}
    operation = only(spans, operation_name)
    assert ancestors(operation, spans) == [server_name]
    under_operation = [span for span in spans if operation_name in ancestors(span, spans)]
    systems = {(span.attributes or {}).get("db.system") for span in under_operation}
    assert {"redis", "postgresql"} <= systems, [span.name for span in under_operation]
    lookup = only(under_operation, "geo lookup")
    provider = only(under_operation, "geo provider")
    assert ancestors(provider, spans) == ["geo lookup", operation_name, server_name]
    return {"server": server, "operation": operation, "lookup": lookup, "provider": provider}


async def test_a_graphql_request_is_one_trace_without_secrets(
    traces: InMemorySpanExporter, settings: Settings, resources: Resources
) -> None:
    token = await make_user(resources, active=fresh_ips(2), history=fresh_ips(2))
    async with in_process(settings) as client:
        response = await client.post(
            "/graphql", json={"query": MINE, "operationName": "Mine"}, headers=cookie(token)
        )
        assert response.status_code == 200, response.text
        assert "errors" not in response.json()
        await wait_for(traces, "geo provider")
    spans = traces.get_finished_spans()
    found = assert_one_request(spans, "POST /graphql", "query Mine")
    server = found["server"].attributes or {}
    assert server["http.route"] == "/graphql"
    assert server["sessions_api.request_id"] == response.headers["x-request-id"]
    # Every header was captured, but the cookie's value.
    assert server["http.request.header.cookie"] == REDACTED
    assert server["http.request.header.content_type"] == ("application/json",)
    assert found["operation"].attributes == {
        "sessions_api.graphql.engine": "compiled",
        "graphql.operation.type": "query",
        "graphql.operation.name": "Mine",
    }
    assert found["provider"].attributes == {
        "sessions_api.geo.provider": "offline",
        "sessions_api.geo.ips": 4,
    }
    assert_nowhere(spans, token, hash_token(token), "psession=")


async def test_the_rest_route_is_one_trace_with_the_operation_it_runs(
    traces: InMemorySpanExporter, settings: Settings, resources: Resources
) -> None:
    token = await make_user(resources, active=fresh_ips(2), history=fresh_ips(1))
    async with in_process(settings) as client:
        # The token in the query string too: a hand-made `?psession=` for the page's `#psession=`.
        query = {"limit": 5, "psession": token}
        response = await client.get(ROUTE, params=query, headers=cookie(token))
        assert response.status_code == 200, response.text
        await wait_for(traces, "geo provider")
    spans = traces.get_finished_spans()
    found = assert_one_request(spans, f"GET {ROUTE}", "query RestV1Sessions")
    assert (found["operation"].attributes or {})["sessions_api.graphql.engine"] == "compiled"
    server = found["server"].attributes or {}
    assert server["http.request.header.cookie"] == REDACTED
    assert (server["http.target"], server["http.url"]) == (ROUTE, f"http://testserver{ROUTE}")
    # Postgres spans have the SQL, with placeholders for its values.
    statements = [
        str((span.attributes or {}).get("db.statement"))
        for span in spans
        if (span.attributes or {}).get("db.system") == "postgresql"
    ]
    assert statements and all("$1" in statement for statement in statements), statements
    assert_nowhere(spans, token, hash_token(token), "psession=")


async def test_what_the_fallback_runs_is_named_too(
    traces: InMemorySpanExporter, settings: Settings, resources: Resources
) -> None:
    """Mutations run through Strawberry: REST's revocation of the other sessions."""
    token = await make_user(resources, active=fresh_ips(3))
    async with in_process(settings) as client:
        response = await client.delete(ROUTE, headers=cookie(token))
        assert response.json() == {"count": 2}
    spans = traces.get_finished_spans()
    server = only(spans, f"DELETE {ROUTE}")
    operation = only(spans, "mutation RestV1RevokeOtherSessions")
    assert ancestors(operation, spans) == [server.name]
    assert (operation.attributes or {})["sessions_api.graphql.engine"] == "fallback"
    assert_nowhere(spans, token, hash_token(token), "psession=")


async def test_an_admin_key_is_never_recorded(
    traces: InMemorySpanExporter, settings: Settings, resources: Resources
) -> None:
    _, key = await admin.create_key(resources.store.pool, name="tracing", scopes=["sessions:read"])
    path = "/admin/v1/users/someone/sessions"
    async with in_process(settings) as client:
        response = await client.get(path, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
    spans = traces.get_finished_spans()
    server = only(spans, "GET /admin/v1/users/{user_id}/sessions")
    assert (server.attributes or {})["http.request.header.authorization"] == REDACTED
    assert [span.name for span in spans if span.name.startswith("SELECT")], "no Postgres span"
    assert_nowhere(spans, key, admin.hash_key(key))


async def test_ip_api_requests_are_client_spans_without_the_key(
    traces: InMemorySpanExporter, base_settings: Settings, resources: Resources
) -> None:
    key = "ipapi-key-never-recorded"
    async with fake_ipapi() as fake:
        url = fake.url
        with_ipapi = base_settings.model_copy(
            update={
                "geo_provider": "ip-api",
                "geo_ipapi_url": url,
                "geo_ipapi_key": SecretStr(key),
            }
        )
        token = await make_user(resources, active=fresh_ips(2))
        async with in_process(with_ipapi) as client:
            # Baggage the client sends would go on with the context, were any sent out.
            headers = {**cookie(token), "baggage": "tenant=acme"}
            assert (await client.get(ROUTE, headers=headers)).status_code == 200
            await wait_for(traces, "geo provider")
        assert [request.params.get("key") for request in fake.requests] == [[key]]
        # Its client span is in our trace, but ip-api learns nothing of it.
        assert [sorted(CONTEXT & request.headers.keys()) for request in fake.requests] == [[]]
    spans = traces.get_finished_spans()
    found = assert_one_request(spans, f"GET {ROUTE}", "query RestV1Sessions")
    (request,) = [span for span in spans if span.kind is SpanKind.CLIENT and span.name == "POST"]
    assert ancestors(request, spans)[0] == "geo provider"
    attributes = request.attributes or {}
    assert attributes.get("http.url", attributes.get("url.full")) == f"{url}/batch"
    assert attributes.get("http.status_code", attributes.get("http.response.status_code")) == 200
    assert (found["provider"].attributes or {})["sessions_api.geo.provider"] == "ip-api"
    assert_nowhere(spans, key, token, hash_token(token))


async def test_probes_and_scrapes_make_no_trace(
    traces: InMemorySpanExporter, settings: Settings
) -> None:
    async with in_process(settings) as client:
        for path in ("/healthz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        assert (await client.get("/no/such/path")).status_code == 404
    (unmatched,) = traces.get_finished_spans()
    # A path no route takes is named by its method alone, and recorded nowhere: clients choose
    # paths.
    assert unmatched.name == "GET" and "http.route" not in (unmatched.attributes or {})
    assert (unmatched.attributes or {})["http.target"] == ""
    assert_nowhere([unmatched], "/no/such", "such/path")


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "sessions"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"}, ["console"]),
    ],
)
def test_which_variables_turn_traces_on(environ: dict[str, str], exporters: list[str]) -> None:
    assert sessions_spans.exporters_asked_for(environ) == exporters


def test_exporters_are_made_by_name() -> None:
    # Made, not used: nothing is sent anywhere.
    assert isinstance(tracing.exporter("console", {}), ConsoleSpanExporter)
    assert isinstance(tracing.exporter("otlp", {}), OTLPSpanExporter)
    protobuf = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert isinstance(tracing.exporter("otlp", protobuf), OTLPSpanExporter)
    # The gRPC exporter is not in the extra: a bad configuration, as an unknown exporter is.
    with pytest.raises(sessions_spans.BadConfiguration, match="'otlp_proto_grpc' is installed"):
        tracing.exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(sessions_spans.BadConfiguration, match="OTEL_TRACES_EXPORTER: no exp"):
        tracing.exporter("zipkin", {})


def test_without_the_variables_the_app_has_no_traces(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.start()
    assert not sessions_spans.enabled()
    app = create_app(settings)
    assert tracing.ServerSpans not in [middleware.cls for middleware in app.user_middleware]


ACCESS = " sessions_api.access: "  # the logger of the access lines, as a text log line has it


def run_python(
    script: str, env: dict[str, str] | None = None, **otel: str
) -> subprocess.CompletedProcess[str]:
    """The script, run by a Python of its own (in `env`, else this process's environment) whose
    only OTEL_* variables are `otel`."""
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **otel},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def one_request(path: str, status: int) -> str:
    """A script: one request to an app of a process of its own (with the OTEL_* it is given)."""
    return f"""
import asyncio, httpx, sys
from sessions_config.settings import Settings
from sessions_http.app import create_app

async def main():
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get({path!r})).status_code == {status}

asyncio.run(main())
"""


# Whose traces OTEL_* turned on.
WITH_THE_VARIABLES = one_request("/no/such/path?psession=secret", 404)


def test_the_variables_turn_traces_on_for_the_process() -> None:
    result = run_python(WITH_THE_VARIABLES, OTEL_TRACES_EXPORTER="console")
    # The console exporter wrote the span out when the process ended.
    (span,) = [json.loads(text) for text in re.findall(r"(?ms)^\{$.*?^\}$", result.stdout)]
    assert span["name"] == "GET" and span["kind"] == "SpanKind.SERVER"
    assert span["attributes"]["http.status_code"] == 404
    assert span["resource"]["attributes"]["service.name"] == "sessions-api"
    assert "secret" not in result.stdout


def test_the_newer_conventions_have_no_path_either() -> None:
    script = one_request("/v1/users/me/sessions/0af7651916cd?psession=secret", 405)
    # Both conventions' attributes at once.
    result = run_python(
        script, OTEL_TRACES_EXPORTER="console", OTEL_SEMCONV_STABILITY_OPT_IN="http/dup"
    )
    (span,) = [json.loads(text) for text in re.findall(r"(?ms)^\{$.*?^\}$", result.stdout)]
    route = "/v1/users/me/sessions/{session_id}"
    assert span["attributes"]["url.path"] == span["attributes"]["http.target"] == route
    assert span["attributes"]["http.url"] == f"http://testserver{route}"
    assert "0af7651916cd" not in result.stdout and "secret" not in result.stdout


# Runs the app's start-up as if OpenTelemetry were not installed.
WITHOUT_THE_EXTRA = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
import graph.execution, sessions_geo.lookup, sessions_spans
from sessions_config.settings import Settings
from sessions_http.app import create_app

app = create_app(Settings())
with sessions_spans.span("nothing") as span:
    assert not span.is_recording()
print(sorted(middleware.cls.__name__ for middleware in app.user_middleware))
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def test_without_the_extra_the_app_starts_as_before() -> None:
    result = run_python(WITHOUT_THE_EXTRA, OTEL_TRACES_EXPORTER="console")
    middleware, imported = result.stdout.splitlines()
    assert "ServerSpans" not in middleware and "RequestMetrics" in middleware
    assert imported == "[]"
    assert "asks for traces, but they need: pip install 'sessions-api[otel]'" in result.stderr


def test_no_OTEL_variable_of_the_environment_reaches_the_tests() -> None:
    """conftest.py takes them out: each would change every app a test makes (and
    OTEL_SEMCONV_STABILITY_OPT_IN, the attributes checked above)."""
    assert [name for name in os.environ if name.startswith("OTEL_")] == []


# The personal data of a path: a session's id, a user's.
async def test_no_path_is_recorded_only_its_route(
    traces: InMemorySpanExporter, settings: Settings, resources: Resources, users: Users
) -> None:
    user = users.new_id()
    me, other = await users.session(user), await users.session(user)
    session_id = other.record.id
    _, key = await admin.create_key(resources.store.pool, name="paths", scopes=["sessions:read"])
    bearer = {"authorization": f"Bearer {key}"}
    async with in_process(settings) as client:
        revoked = await client.delete(f"{ROUTE}/{session_id}", headers=cookie(me.token))
        assert revoked.status_code == 204, revoked.text
        for path in (f"/admin/v1/users/{user}/sessions", f"/admin/v1/sessions/{session_id}"):
            assert (await client.get(path, headers=bearer)).status_code == 200, path
    spans = traces.get_finished_spans()
    server = only(spans, f"DELETE {ROUTE}/{{session_id}}")
    attributes = server.attributes or {}
    assert attributes["http.target"] == f"{ROUTE}/{{session_id}}"
    assert attributes["http.url"] == f"http://testserver{ROUTE}/{{session_id}}"
    assert attributes["http.user_agent"]  # kept, as the conventions have it (README)
    only(spans, "GET /admin/v1/users/{user_id}/sessions")
    only(spans, "GET /admin/v1/sessions/{session_id}")
    assert_nowhere(spans, session_id, session_id.replace("-", ""), user, me.token, key)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(("propagators", "continued"), [("", True), ("none", False)])
async def test_OTEL_PROPAGATORS_none_ignores_the_callers_context(
    traces: InMemorySpanExporter,
    provider: TracerProvider,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    propagators: str,
    continued: bool,
) -> None:
    """By default a request's `traceparent` makes its server span the caller's span's child;
    with OTEL_PROPAGATORS=none (read when traces start), it is ignored."""
    tracing.switch_off()
    monkeypatch.setenv("OTEL_PROPAGATORS", propagators)
    tracing.switch_on(provider)
    async with in_process(settings) as client:
        assert (await client.get("/no/such/path", headers={"traceparent": TRACEPARENT})).is_error
    (server,) = traces.get_finished_spans()
    trace_id = f"{server.context.trace_id:032x}"
    if continued:
        assert server.parent is not None and server.parent.is_remote
        assert trace_id == TRACEPARENT.split("-")[1]
    else:
        assert server.parent is None and trace_id != TRACEPARENT.split("-")[1]


async def test_webhook_deliveries_carry_no_trace_context(
    traces: InMemorySpanExporter, settings: Settings, users: Users, database: str
) -> None:
    """A delivery (outside any request, so no span) tells the customer's endpoint nothing of
    our traces, even while they are on in this process (httpx is instrumented)."""
    with WebhookReceiver() as receiver:
        added = await run_cli(settings, "webhooks", "add", receiver.url)
        assert added.code == 0, added
        endpoint = json.loads(added.lines[-1])["id"]
        try:
            async with in_process(settings, event_workers=True):
                user = users.new_id()
                await users.session(user)
                deadline = time.monotonic() + 30
                while not [r for r in receiver.received if r.event["data"].get("user_id") == user]:
                    assert time.monotonic() < deadline, "no delivery"
                    await asyncio.sleep(0.1)
        finally:
            removed = await run_cli(settings, "webhooks", "remove", endpoint)
            assert removed.code == 0, removed
        assert {name for r in receiver.received for name in r.headers} & CONTEXT == set()


def refused(name: str, value: str, *, named: str = "", **more: str) -> Any:
    """A parameter: `name`=`value` (and `more`), and what the line that refuses it names (`named`,
    else `name`)."""
    return pytest.param({name: value, **more}, named or name, id=f"{name}={value}")


# Values the SDK, the instrumentations or their regexes refuse (each alone, traces asked for).
BAD_VALUES = [
    refused("OTEL_PROPAGATORS", "xray"),
    refused("OTEL_BSP_MAX_QUEUE_SIZE", "0", named="OTEL_BSP_*"),
    refused("OTEL_ATTRIBUTE_COUNT_LIMIT", "x"),
    refused("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1"),
    refused("OTEL_PYTHON_EXCLUDED_URLS", "("),
    refused("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "("),
    refused("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "("),
    refused("OTEL_TRACES_SAMPLER", "xray"),
    refused("OTEL_TRACES_SAMPLER_ARG", "2", OTEL_TRACES_SAMPLER="traceidratio"),
    refused("OTEL_TRACES_EXPORTER", "zipkin"),
]
ASKING = {"OTEL_TRACES_EXPORTER": "console"}


@pytest.mark.parametrize(("bad", "what"), BAD_VALUES)
def test_serve_refuses_a_bad_value_in_one_line(
    bad: dict[str, str], what: str, settings: Settings, database: str
) -> None:
    command = [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    try:
        result = subprocess.run(
            command,
            env=cli_env(settings, **{**ASKING, **bad}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("serve started")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"sessions-api: bad configuration: {what}: "), line


@pytest.mark.parametrize(("bad", "what"), BAD_VALUES)
async def test_an_app_with_a_bad_value_serves_without_traces(
    bad: dict[str, str],
    what: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """For an app made without `serve` (uvicorn's factory): one line, no traceback, no traces."""
    for name, value in {**ASKING, **bad}.items():
        monkeypatch.setenv(name, value)
    textmap = propagate.get_global_textmap()
    try:
        with caplog.at_level(logging.INFO):
            app = create_app(settings)
    finally:
        tracing.stop()  # were they on after all, not for the next tests
    (record,) = [r for r in caplog.records if r.name.startswith("sessions_http")]
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage().startswith(f"traces off: bad configuration: {what}: ")
    assert_all_off(app, textmap)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200


def assert_all_off(app: Starlette, textmap: TextMapPropagator) -> None:
    """Nothing of traces is on: no server spans, instrumentation, span or propagator."""
    assert tracing.ServerSpans not in [middleware.cls for middleware in app.user_middleware]
    assert not sessions_spans.enabled()
    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (asyncpg, RedisInstrumentor(), HTTPXClientInstrumentor()):
        assert not instrumentor.is_instrumented_by_opentelemetry
    assert propagate.get_global_textmap() is textmap


def test_a_start_that_fails_halfway_is_undone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The last instrumentation fails (a version of it we were not written for, say): those
    before it are undone, and the app serves without traces."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("instrumentation broken")

    monkeypatch.setattr(HTTPXClientInstrumentor, "instrument", broken)
    for name, value in ASKING.items():
        monkeypatch.setenv(name, value)
    textmap = propagate.get_global_textmap()
    app = create_app(settings)
    assert "traces off: they could not start: RuntimeError: instrumentation broken" in caplog.text
    assert "Traceback" not in caplog.text
    assert_all_off(app, textmap)
    assert tracing._provider is None and tracing._started is None


# With traces off, a bad OTEL_* value must not matter: what reads them is not even imported
# (redis-py imports OpenTelemetry's metrics API on its own).
TRACES_OFF = one_request("/healthz", 200) + (
    'print(sorted(set(sys.modules) & {"sessions_http.tracing", "opentelemetry.propagate"}))\n'
)


@pytest.mark.parametrize(
    "off",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_with_traces_off_no_OTEL_value_matters(off: dict[str, str]) -> None:
    bad = {name: value for param in BAD_VALUES for name, value in param.values[0].items()}
    del bad["OTEL_TRACES_EXPORTER"]  # it would ask for traces
    result = run_python(TRACES_OFF, **{**bad, **off})
    assert result.stdout.splitlines() == ["[]"]
    # The app sets up logging in a process that has none: its access line, and nothing else.
    assert [line for line in result.stderr.splitlines() if ACCESS not in line] == []


def test_a_stop_waits_for_the_exporters_within_its_bound() -> None:
    """An exporter that does not return (a collector that does not answer) holds up stopping
    for the bound only."""
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(30)
            return SpanExportResult.SUCCESS

    stuck = TracerProvider(shutdown_on_exit=False)
    stuck.add_span_processor(BatchSpanProcessor(Stuck()))
    stuck.get_tracer("test").start_span("waiting").end()
    started = time.monotonic()
    try:
        assert not tracing.shut_down(stuck, 0.5)
        assert time.monotonic() - started < 2
    finally:
        release.set()


# An app of a process of its own, with traces on, stopped after one request: says when it
# began stopping, when its lifespan ended, and when the process's exit (where the SDK's own
# shutdown runs) ended.
STOPPED = """
import asyncio, atexit, httpx, time
from sessions_config.settings import Settings
from sessions_http.app import create_app

began = []
atexit.register(lambda: print(f"exited {time.monotonic() - began[0]:.2f}", flush=True))

async def main():
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/no/such/path")).status_code == 404
        began.append(time.monotonic())
    print(f"stopped {time.monotonic() - began[0]:.2f}", flush=True)

asyncio.run(main())
"""


def app_env(settings: Settings) -> dict[str, str]:
    """For an app in a process of its own: the run's Postgres and Redis, no event workers."""
    return cli_env(settings, EVENT_WORKERS="false", GEO_PROVIDER="offline", LOG_LEVEL="warning")


def test_the_apps_end_sends_the_last_spans(settings: Settings, database: str) -> None:
    result = run_python(STOPPED, app_env(settings), OTEL_TRACES_EXPORTER="console")
    # The span was written out (by its batch) before the app's lifespan ended, not at exit.
    lines = result.stdout.splitlines()
    stopped = next(i for i, line in enumerate(lines) if line.startswith("stopped "))
    assert '"name": "GET",' in "\n".join(lines[:stopped]), result.stdout


def test_an_unreachable_collector_delays_the_end_by_the_bound_only(
    settings: Settings, database: str
) -> None:
    # A collector that takes connections and never answers: the exporter waits for its timeout.
    with socket.create_server(("127.0.0.1", 0), backlog=8) as collector:
        endpoint = f"http://127.0.0.1:{collector.getsockname()[1]}/v1/traces"
        result = run_python(STOPPED, app_env(settings), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
        collector.settimeout(0)
        collector.accept()[0].close()  # the exporter did try
    stopped, exited = (float(line.split()[1]) for line in result.stdout.splitlines())
    assert tracing.SHUTDOWN_SECONDS - 0.5 < stopped < tracing.SHUTDOWN_SECONDS + 2, stopped
    assert exited - stopped < 1, exited
    assert "the last spans were not sent within 2.0 s of stopping" in result.stderr


# Runs the app's start-up with an OpenTelemetry that lacks a name tracing.py imports (another
# version than it was written for).
VERSION_DRIFT = """
import importlib.abc, sys

class Drifted(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "opentelemetry.instrumentation.redis":
            raise ImportError("cannot import name 'RedisInstrumentor'", name=name)

sys.meta_path.insert(0, Drifted())
from sessions_config.settings import Settings
from sessions_http.app import create_app

app = create_app(Settings())
print(sorted(middleware.cls.__name__ for middleware in app.user_middleware))
"""


def test_an_OpenTelemetry_of_another_version_leaves_traces_off_in_one_line() -> None:
    result = run_python(VERSION_DRIFT, OTEL_TRACES_EXPORTER="console")
    assert "ServerSpans" not in result.stdout and "RequestMetrics" in result.stdout
    (line,) = [line for line in result.stderr.splitlines() if ACCESS not in line]
    assert " ERROR sessions_http.app: traces off: they could not start: ImportError: " in line

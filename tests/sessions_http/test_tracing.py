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
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

import sessions_spans
from sessions_config.resources import Resources
from sessions_config.settings import Settings
from sessions_http import tracing
from sessions_http.app import create_app
from store import admin
from store.tokens import hash_token
from tests.app_client import ROUTE, cookie
from tests.geo_app import fake_ipapi, fresh_ips, make_user

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
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app, started in this process; closed (its lookups finished) on leaving."""
    app = create_app(settings.model_copy(update={"event_workers": False}))
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
            assert (await client.get(ROUTE, headers=cookie(token))).status_code == 200
            await wait_for(traces, "geo provider")
        assert [request.params.get("key") for request in fake.requests] == [[key]]
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
    # A path no route takes is named by its method alone: clients choose paths.
    assert unmatched.name == "GET" and "http.route" not in (unmatched.attributes or {})


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
    assert tracing.exporters_asked_for(environ) == exporters


def test_exporters_are_made_by_name(caplog: pytest.LogCaptureFixture) -> None:
    # Made, not used: nothing is sent anywhere.
    assert isinstance(tracing.exporter("console", {}), ConsoleSpanExporter)
    assert isinstance(tracing.exporter("otlp", {}), OTLPSpanExporter)
    protobuf = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert isinstance(tracing.exporter("otlp", protobuf), OTLPSpanExporter)
    # The gRPC exporter is not in the extra.
    assert tracing.exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) is None
    assert tracing.exporter("zipkin", {}) is None
    assert "no exporter 'otlp_proto_grpc' is installed" in caplog.text


def test_without_the_variables_the_app_has_no_traces(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.start()
    assert not sessions_spans.enabled()
    app = create_app(settings)
    assert tracing.ServerSpans not in [middleware.cls for middleware in app.user_middleware]


def run_python(script: str, **otel: str) -> subprocess.CompletedProcess[str]:
    """The script, run by a Python of its own whose only OTEL_* variables are `otel`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **otel},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


# A request to an app of a process of its own, whose traces OTEL_* turned on.
WITH_THE_VARIABLES = """
import asyncio, httpx
from sessions_config.settings import Settings
from sessions_http.app import create_app

async def main():
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/no/such/path?psession=secret")).status_code == 404

asyncio.run(main())
"""


def test_the_variables_turn_traces_on_for_the_process() -> None:
    result = run_python(WITH_THE_VARIABLES, OTEL_TRACES_EXPORTER="console")
    # The console exporter wrote the span out when the process ended.
    (span,) = [json.loads(text) for text in re.findall(r"(?ms)^\{$.*?^\}$", result.stdout)]
    assert span["name"] == "GET" and span["kind"] == "SpanKind.SERVER"
    assert span["attributes"]["http.status_code"] == 404
    assert span["resource"]["attributes"]["service.name"] == "sessions-api"
    assert "secret" not in result.stdout


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
    assert "traces need: pip install 'sessions-api[otel]'" in result.stderr

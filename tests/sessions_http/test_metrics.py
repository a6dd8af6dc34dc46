"""GET /metrics: what an operator's Prometheus sees. Requests are counted by route template
(never by raw path or id), cookies by outcome, geolocation by where answers came from and how
the provider failed; tokens and ids never appear; several workers add up."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Mapping

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sessions_config.settings import Settings
from sessions_geo.ipapi import IpApiProvider
from tests.app_client import ROUTE, assert_healthy, cookie, fresh_ip, signs_in
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.ipapi_server import IpApiServer
from tests.servers import serve_process

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, str]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    return parse(response.text), response.text


async def scrape_until(
    client: httpx.AsyncClient, before: Samples, name: str, count: int, *, but_route: str
) -> tuple[Samples, str]:
    """Scrapes until the samples of `name` (other than `but_route`'s) grew by `count`; a bound
    of ten seconds keeps a miscount from hanging the suite."""

    def total(samples: Samples) -> float:
        return sum(
            v
            for (n, labels), v in samples.items()
            if n == name and ("route", but_route) not in labels
        )

    deadline = asyncio.get_running_loop().time() + 10
    while True:
        after, text = await scrape(client)
        if total(after) - total(before) >= count or asyncio.get_running_loop().time() > deadline:
            return after, text
        await asyncio.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


REQUESTS = "sessions_api_http_requests_total"
DURATIONS = "sessions_api_http_request_duration_seconds_count"
AUTH = "sessions_api_authentications_total"
GEO_IPS = "sessions_api_geo_ips_total"
BATCHES = "sessions_api_geo_provider_batches_total"
FAILURES = "sessions_api_geo_provider_failures_total"


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, users: Users
) -> None:
    me, other = [await users.session(users.new_id(), ip=fresh_ip()) for _ in range(2)]
    probe = f"/no-such-page-{secrets.token_hex(4)}"
    before, _ = await scrape(client)

    assert await signs_in(client, me.token)
    assert_rest_error(await client.get(ROUTE), 401, "unauthenticated")
    deleted = await client.delete(f"{ROUTE}/{other.record.id}", headers=cookie(me.token))
    assert_rest_error(deleted, 404, "not_found")
    assert_rest_error(await client.get(probe), 404, "not_found")
    assert_rest_error(await client.put(ROUTE), 405, "method_not_allowed")
    assert_rest_error(await client.request("PURGE", ROUTE), 405, "method_not_allowed")
    page = await client.get("/static/graphiql/index.html")
    assert page.status_code == 200
    assert "/static/graphiql/graphiql.min.js" in page.text

    # A request is counted when the app has finished with it, which can be just after the
    # client has its answer (a file response closes its file afterwards): wait for all 7.
    after, text = await scrape_until(client, before, REQUESTS, 7, but_route="/metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(REQUESTS, method="GET", route=ROUTE, status="200") == 1
    assert delta(REQUESTS, method="GET", route=ROUTE, status="401") == 1
    by_id = f"{ROUTE}/{{session_id}}"
    assert delta(REQUESTS, method="DELETE", route=by_id, status="404") == 1
    assert delta(REQUESTS, method="GET", route="unmatched", status="404") == 1
    assert delta(REQUESTS, method="PUT", route=ROUTE, status="405") == 1
    assert delta(REQUESTS, method="other", route=ROUTE, status="405") == 1
    assert delta(REQUESTS, method="GET", route="/static", status="200") == 1
    assert delta(DURATIONS, method="GET", route=ROUTE) == 2
    # Labels are templates: no id, no probed path or method, no token becomes part of a series.
    for secret in (other.record.id, probe, "PURGE", me.token, me.record.token_hash):
        assert secret not in text


async def test_cross_site_refusals_are_counted_too(client: httpx.AsyncClient, users: Users) -> None:
    me = await users.session(users.new_id(), ip=fresh_ip())
    before, _ = await scrape(client)
    response = await client.delete(
        ROUTE, headers={**cookie(me.token), "origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert_rest_error(response, 403, "forbidden_origin")
    after, _ = await scrape(client)
    labels = {"method": "DELETE", "route": ROUTE, "status": "403"}
    assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1


async def test_cookies_are_counted_as_accepted_or_rejected(
    client: httpx.AsyncClient, users: Users
) -> None:
    me = await users.session(users.new_id(), ip=fresh_ip())
    before, _ = await scrape(client)
    await client.get(ROUTE, headers=cookie(me.token))
    await client.get(ROUTE, headers=cookie(secrets.token_urlsafe(32)))
    await client.get(ROUTE, headers=cookie("not a token"))
    await client.get(ROUTE)  # no cookie: nothing was checked
    after, _ = await scrape(client)
    accepted = value(after, AUTH, outcome="accepted") - value(before, AUTH, outcome="accepted")
    rejected = value(after, AUTH, outcome="rejected") - value(before, AUTH, outcome="rejected")
    assert (accepted, rejected) == (1, 2)


async def test_geolocation_counts_provider_answers_then_cache_hits(
    client: httpx.AsyncClient, users: Users
) -> None:
    user_id = users.new_id()
    ips = ["8.8.8.8", fresh_ip(), fresh_ip(), "10.0.0.1"]  # the private one is never looked up
    first = await users.session(user_id, ip=ips[0])
    for ip in ips[1:]:
        await users.session(user_id, ip=ip)
    # 8.8.8.8 may be cached by an earlier test; the two fresh ones cannot be.
    before, _ = await scrape(client)
    assert await signs_in(client, first.token)
    middle, _ = await scrape(client)
    assert await signs_in(client, first.token)
    after, _ = await scrape(client)

    def delta(a: Samples, b: Samples, source: str) -> float:
        return value(b, GEO_IPS, source=source) - value(a, GEO_IPS, source=source)

    looked_up = sum(delta(before, middle, s) for s in ("cache", "provider", "none"))
    assert looked_up == 3
    assert delta(before, middle, "provider") >= 2
    assert (
        value(middle, BATCHES, provider="offline") - value(before, BATCHES, provider="offline") == 1
    )
    # The second page view is answered from the cache alone.
    assert delta(middle, after, "cache") == 3
    assert delta(middle, after, "provider") == 0
    assert value(after, BATCHES, provider="offline") == value(middle, BATCHES, provider="offline")


@pytest.fixture
def ipapi_server() -> Iterator[IpApiServer]:
    with IpApiServer() as server:
        yield server


async def test_provider_failures_are_counted_by_reason(
    client: httpx.AsyncClient, ipapi_server: IpApiServer
) -> None:
    before, _ = await scrape(client)
    for setup, timeout in (
        (lambda: setattr(ipapi_server, "remaining", 0), 2.0),  # 429
        (lambda: setattr(ipapi_server, "mode", "error"), 2.0),  # HTTP 500
        (lambda: setattr(ipapi_server, "delay", 1.0), 0.2),  # too slow
    ):
        ipapi_server.reset()
        setup()
        provider = IpApiProvider(ipapi_server.url, timeout=timeout)
        try:
            assert await provider.lookup(["8.8.8.8"]) == {}
        finally:
            await provider.aclose()
    after, _ = await scrape(client)
    for reason in ("rate_limited", "bad_answer", "timeout"):
        labels = {"provider": "ip-api", "reason": reason}
        assert value(after, FAILURES, **labels) - value(before, FAILURES, **labels) == 1, reason


async def test_several_workers_report_their_sum(
    base_settings: Settings,
    database: str,
    redis_keyspace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    temp = tmp_path_factory.mktemp("workers")
    # serve makes the workers' shared metrics directory under TMPDIR: here, where it can be seen.
    with serve_process(
        base_settings, temp / "serve.log", "--workers", "2", env={"TMPDIR": str(temp)}
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as workers:
            before, _ = await scrape(workers)
            # New connections each time, so both workers answer some of them.
            for _ in range(40):
                async with httpx.AsyncClient(base_url=url, timeout=20) as once:
                    assert_healthy(await once.get("/healthz"))
            # Whichever worker answers the scrape, it reports all 40.
            for _ in range(4):
                async with httpx.AsyncClient(base_url=url, timeout=20) as once:
                    after, _ = await scrape(once)
                labels = {"method": "GET", "route": "/healthz", "status": "200"}
                assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 40
        [shared] = temp.glob("sessions-api-metrics-*")
        # Both workers counted (else the sum above would prove nothing).
        pids = {path.stem.rsplit("_", 1)[-1] for path in shared.glob("counter_*.db")}
        assert len(pids) == 2, sorted(p.name for p in shared.iterdir())
    assert not list(temp.glob("sessions-api-metrics-*"))  # removed when serve stops

"""Geolocation round trips, counted at a real HTTP server speaking ip-api's batch protocol.

One query makes ceil(N/100) provider requests for N new distinct global IPs, a warm one makes
none; non-global IPs are never sent; failures, rate limits and timeouts give null geo without
breaking the page.

Tests that trigger rate limits, timeouts or need other settings start their own app (and their
own fake ip-api server), because the shared `ipapi_app` keeps its provider's back-off state.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from tests import ipapi_server
from tests.app_client import graphql_data, rest_sessions
from tests.geo_app import fake_ipapi, fresh_ips, make_user, own_app
from tests.ipapi_server import IpApiServer, answer_for
from tests.servers import serve_process

pytestmark = pytest.mark.redis_topologies

QUERY = """
query {
  me {
    sessions { clientIp geo { countryCode } }
    history(first: 200) { edges { node { clientIp geo { countryCode } } } }
  }
}
"""


async def graphql_geo(base_url: str, token: str) -> list[tuple[str, dict[str, Any] | None]]:
    """(clientIp, geo) for every active and past session the GraphQL query returns."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        me = (await graphql_data(client, QUERY, token=token))["me"]
    rows = [(s["clientIp"], s["geo"]) for s in me["sessions"]]
    rows += [(e["node"]["clientIp"], e["node"]["geo"]) for e in me["history"]["edges"]]
    return rows


async def rest_geo(base_url: str, token: str) -> list[tuple[str, dict[str, Any] | None]]:
    """(client_ip, geo) for every active and past session the REST route returns."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        body = await rest_sessions(client, token)
    return [(s["client_ip"], s["geo"]) for s in body["sessions"] + body["history"]]


def expected_country(ip: str) -> str:
    return str(answer_for(ip)["countryCode"])


def assert_batches(fake: IpApiServer, distinct: set[str]) -> None:
    """ceil(N/100) requests of at most 100 queries, every distinct IP sent exactly once."""
    requests = fake.requests
    assert len(requests) == math.ceil(len(distinct) / 100)
    assert all(r.method == "POST" and r.path == "/batch" for r in requests)
    assert all(len(r.queries) <= 100 for r in requests)
    sent = fake.queried_ips
    assert sorted(sent) == sorted(distinct)  # each one, and each only once


def assert_geo_from_provider(rows: list[tuple[str, dict[str, Any] | None]]) -> None:
    for ip, geo in rows:
        assert geo is not None, ip
        country = geo.get("countryCode", geo.get("country_code"))
        assert country == expected_country(ip), ip


async def cold_then_warm(
    base_url: str, fake: IpApiServer, token: str, ips: list[str]
) -> tuple[list[tuple[str, dict[str, Any] | None]], int]:
    """The page twice. Cold: every distinct IP goes to the provider once, in batches
    (assert_batches), and each session's geo is the provider's. Warm: the provider hears nothing
    and the page is the same. Returns the cold page and how many requests it made."""
    cold = await graphql_geo(base_url, token)
    assert_batches(fake, set(ips))
    assert_geo_from_provider(cold)
    requests = len(fake.requests)
    fake.reset()
    warm = await graphql_geo(base_url, token)
    assert fake.requests == []
    assert warm == cold
    return cold, requests


# -- batching and the cache ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 100])
async def test_cold_query_makes_one_request_per_100_ips_and_warm_none(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources, n: int
) -> None:
    ipapi.reset()
    ips = fresh_ips(n)
    token = await make_user(resources, active=ips[: n // 2 + 1], history=ips[n // 2 + 1 :])

    cold, _ = await cold_then_warm(ipapi_app, ipapi, token, ips)
    assert len(cold) == n


async def test_150_ips_over_sessions_and_history_make_two_requests(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources
) -> None:
    """Active sessions and history share one loader: an IP in both is sent once."""
    ipapi.reset()
    ips = fresh_ips(150)
    # 110 active and 40 new in history: looked up apart, that would be 100 + 10 + 40 (3 requests).
    active = ips[:110]
    history = ips[90:] + ips[100:105]  # 20 IPs also active, 5 of them twice in history
    token = await make_user(resources, active=active, history=history)

    cold, requests = await cold_then_warm(ipapi_app, ipapi, token, ips)
    assert len(cold) == len(active) + len(history)
    assert requests == 2


async def test_a_second_process_sends_nothing_the_first_has_cached(
    ipapi_app: str,
    ipapi: IpApiServer,
    resources: Resources,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Two `serve` processes on one Redis (or cluster) are one service: what one located, the
    other reads from the shared cache, without asking the provider again."""
    ipapi.reset()
    ips = fresh_ips(5)
    token = await make_user(resources, active=ips[:3], history=ips[3:])
    first = await rest_geo(ipapi_app, token)
    assert sorted(ipapi.queried_ips) == sorted(ips)

    ipapi.reset()
    provider = {"GEO_PROVIDER": "ip-api", "GEO_IPAPI_URL": ipapi.url, "GEO_TIMEOUT": "1.0"}
    with serve_process(settings, tmp_path / "serve.log", env=provider) as other:
        second = await rest_geo(other, token)
        assert ipapi.requests == []
        assert second == first
        # It does ask the provider, for an address nobody has located yet.
        new = fresh_ips(1)
        await rest_geo(other, await make_user(resources, active=new))
        assert ipapi.queried_ips == new


async def test_a_new_ip_next_to_cached_ones_is_the_only_one_sent(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources
) -> None:
    ipapi.reset()
    known, new = fresh_ips(3), fresh_ips(1)
    await graphql_geo(ipapi_app, await make_user(resources, active=known))

    ipapi.reset()
    rows = await graphql_geo(ipapi_app, await make_user(resources, active=known + new))
    assert ipapi.queried_ips == new
    assert len(ipapi.requests) == 1
    assert_geo_from_provider(rows)


async def test_rest_route_makes_one_batched_lookup_for_sessions_and_history(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources
) -> None:
    ipapi.reset()
    ips = fresh_ips(100)
    active = ips[:60]
    history = ips[50:]  # 50 past sessions (the REST page size), 10 IPs also active
    token = await make_user(resources, active=active, history=history)

    cold = await rest_geo(ipapi_app, token)
    assert len(cold) == 110
    assert_batches(ipapi, set(ips))
    assert len(ipapi.requests) == 1
    assert_geo_from_provider(cold)

    ipapi.reset()
    warm = await rest_geo(ipapi_app, token)
    assert ipapi.requests == []
    assert warm == cold


# -- what is never sent --------------------------------------------------------------------------

NON_GLOBAL = [
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "127.0.0.1",
    "100.64.0.1",  # CGNAT
    "169.254.1.1",  # link-local
    "203.0.113.7",  # documentation (TEST-NET-3)
    "198.51.100.5",  # documentation (TEST-NET-2)
    "192.0.2.1",  # documentation (TEST-NET-1)
    "::1",
    "fe80::1",
    "fc00::1",
    "2001:db8::1",  # documentation
    "::ffff:10.0.0.1",  # IPv4-mapped private address
]


def fresh_non_global_ips() -> list[str]:
    """One new address in each non-global range, so a wrongly cached answer from an earlier test
    cannot hide that it was sent."""

    def r(n: int) -> int:
        return random.randint(1, n)

    return [
        f"10.{r(254)}.{r(254)}.{r(254)}",
        f"192.168.{r(254)}.{r(254)}",
        f"172.{15 + r(16)}.{r(254)}.{r(254)}",
        f"127.{r(254)}.{r(254)}.{r(254)}",
        f"100.{63 + r(64)}.{r(254)}.{r(254)}",
        f"169.254.{r(254)}.{r(254)}",
        f"203.0.113.{r(254)}",
        f"198.51.100.{r(254)}",
        f"192.0.2.{r(254)}",
        f"fe80::{r(0xFFFF):x}:{r(0xFFFF):x}",
        f"fd{r(0xFF):02x}::{r(0xFFFF):x}",
        f"2001:db8:{r(0xFFFF):x}::{r(0xFFFF):x}",
        f"::ffff:192.168.{r(254)}.{r(254)}",
    ]


@pytest.mark.parametrize("route", ["graphql", "rest"])
async def test_non_global_ips_are_never_sent_and_have_null_geo(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources, route: str
) -> None:
    ipapi.reset()
    [public] = fresh_ips(1)
    private = NON_GLOBAL + fresh_non_global_ips()
    token = await make_user(resources, active=[*private[:10], public], history=private[10:])

    fetch = graphql_geo if route == "graphql" else rest_geo
    rows = await fetch(ipapi_app, token)

    assert ipapi.queried_ips == [public]
    geo = dict(rows)
    assert len(geo) == len(set(private)) + 1
    assert geo.pop(public) is not None
    assert geo == {ip: None for ip in geo}


# -- provider failures ---------------------------------------------------------------------------


async def test_an_ip_the_provider_fails_on_gets_null_geo_and_is_not_asked_again_soon(
    settings: Settings, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ip-api answers `status: fail` for some addresses; that is remembered for a short time
    (GEO_FAILURE_TTL, 1 s here), while good answers stay cached."""
    failing, fine = fresh_ips(2)
    real_answer = ipapi_server.answer_for

    def answer(query: str) -> dict[str, Any]:
        if query == failing:
            return {"status": "fail", "message": "reserved range", "query": query}
        return real_answer(query)

    # The fake server looks answers up in its module at request time.
    monkeypatch.setattr(ipapi_server, "answer_for", answer)
    token = await make_user(resources, active=[failing, fine])

    async with fake_ipapi() as fake:
        with own_app(settings, fake, geo_failure_ttl=1) as app:
            first = dict(await graphql_geo(app, token))
            assert first[failing] is None
            assert first[fine] == {"countryCode": expected_country(fine)}
            assert sorted(fake.queried_ips) == sorted([failing, fine])

            fake.reset()
            assert dict(await graphql_geo(app, token)) == first
            assert fake.requests == []

            await asyncio.sleep(1.5)  # the failure is forgotten, the good answer is not
            fake.reset()
            assert dict(await graphql_geo(app, token)) == first
            assert fake.queried_ips == [failing]


async def _rate_limited_then_window_resets(
    settings: Settings, resources: Resources, fake: IpApiServer, *, first_answered: bool
) -> None:
    """With the provider quiet, new IPs get null geo and nothing is sent; after the window
    (X-Ttl: 2) they are fetched, since nothing was cached for them."""
    fake.ttl = 2
    before, during = fresh_ips(2), fresh_ips(3)
    token_before = await make_user(resources, active=before)
    token_during = await make_user(resources, active=during)

    with own_app(settings, fake) as app:
        rows = dict(await graphql_geo(app, token_before))
        assert len(fake.requests) == 1  # answered with X-Rl: 0, or 429
        if first_answered:
            assert all(geo is not None for geo in rows.values())
        else:
            assert rows == {ip: None for ip in before}

        # The window has not reset: nothing is sent, the page still answers, geo is null.
        for _ in range(2):
            rows = dict(await graphql_geo(app, token_during))
            assert rows == {ip: None for ip in during}
        assert len(fake.requests) == 1

        fake.remaining = None  # the provider's window resets
        await asyncio.sleep(fake.ttl + 0.5)
        fake.reset()
        rows = dict(await graphql_geo(app, token_during))
        assert sorted(fake.queried_ips) == sorted(during)
        assert_geo_from_provider(list(rows.items()))


async def test_at_x_rl_0_nothing_is_sent_until_the_window_resets(
    settings: Settings, resources: Resources
) -> None:
    async with fake_ipapi() as fake:
        fake.remaining = 1  # the first batch is answered, with X-Rl: 0
        await _rate_limited_then_window_resets(settings, resources, fake, first_answered=True)


async def test_after_a_429_nothing_is_sent_until_the_window_resets(
    settings: Settings, resources: Resources
) -> None:
    async with fake_ipapi() as fake:
        fake.remaining = 0  # the first batch gets 429 Too Many Requests
        await _rate_limited_then_window_resets(settings, resources, fake, first_answered=False)


async def test_a_slow_provider_gives_null_geo_instead_of_a_hanging_page(
    settings: Settings, resources: Resources
) -> None:
    ips = fresh_ips(2)
    token = await make_user(resources, active=ips)
    async with fake_ipapi() as fake:
        fake.delay = 2.0
        with own_app(settings, fake, geo_timeout=0.3) as app:
            rows = dict(await graphql_geo(app, token))  # the client gives up after 10 s
            assert rows == {ip: None for ip in ips}
            assert len(fake.requests) == 1
    # A timeout is not an answer: nothing is cached, so the IPs are looked up again later.
    keys = [resources.store.keys.geo("ip-api", ip) for ip in ips]
    assert await resources.store.redis.exists(*keys) == 0

"""Faults in geolocation never take the page down.

The provider is a real HTTP server on loopback (tests/ipapi_server.py) made to answer anything:
non-finite and huge numbers, deep nesting, huge or unencodable strings, wrong types, absurd
headers, hangs, drip-fed bodies. Checked at three levels: IpApiProvider alone (what it makes of
each answer), GeoLookup on the run's Redis (cache entries, merged misses, GEO_WAIT), and a real
app (what a user sees on REST and GraphQL, what ends up in Redis, when the provider is asked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from sessions_geo.ipapi import (
    DEFAULT_RATE_LIMIT_SECONDS,
    FAILURE_BACKOFF_SECONDS,
    FIELDS,
    MAX_ANSWER_BYTES,
    MAX_RATE_LIMIT_SECONDS,
    IpApiProvider,
)
from sessions_geo.lookup import GeoLookup
from sessions_geo.model import MAX_TEXT, GeoInfo
from store.geo_cache import GeoCache
from tests.app_client import GRAPHQL_RESPONSE, ROUTE, cookie
from tests.geo_app import fake_ipapi, fresh_ips, make_user, own_app
from tests.ipapi_provider import GOOGLE_DNS, FakeClock
from tests.ipapi_server import IpApiServer, answer_for

GEO_FIELDS = "city regionName countryCode lat lon isp org isMobile isProxy isHosting"
QUERY = f"""
query {{
  me {{
    sessions {{ clientIp geo {{ {GEO_FIELDS} }} }}
    history(first: 50) {{ edges {{ node {{ clientIp geo {{ {GEO_FIELDS} }} }} }} }}
  }}
}}
"""
# ip-api's name of each field -> ours (GeoInfo's, and the REST v1 key).
OURS = {
    "city": "city",
    "regionName": "region_name",
    "countryCode": "country_code",
    "lat": "lat",
    "lon": "lon",
    "isp": "isp",
    "org": "org",
    "mobile": "is_mobile",
    "proxy": "is_proxy",
    "hosting": "is_hosting",
}


def trimmed(ip: str) -> dict[str, Any]:
    """ip-api's real answer for ip, trimmed to the fields the provider asks for."""
    wanted = set(FIELDS.split(","))
    return {k: v for k, v in answer_for(ip).items() if k in wanted}


def with_field(field: str, raw: str) -> Callable[[list[str]], bytes]:
    """A body whose answers are the real ones, except `field`, which is this raw JSON text."""

    def body(queries: list[str]) -> bytes:
        items = []
        for query in queries:
            item = {k: v for k, v in trimmed(query).items() if k != field}
            items.append(json.dumps(item)[:-1] + f', "{field}": {raw}}}')
        return ("[" + ", ".join(items) + "]").encode()

    return body


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def bad_answers() -> float:
    return metric(
        "sessions_api_geo_provider_failures_total", provider="ip-api", reason="bad_answer"
    )


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.stack_info]
    assert logged == [], [r.getMessage() for r in logged]


def valid_json(value: object) -> str:
    """JSON for value, refusing NaN and the infinities, as a client's parser would."""
    return json.dumps(value, allow_nan=False)


# -- the triggers --------------------------------------------------------------------------------

# Values that are unusable, for one field of an otherwise good answer: that field is unknown.
BAD_VALUES = {
    "lat 1e999": ("lat", "1e999"),
    "lat NaN": ("lat", "NaN"),
    "lon -Infinity": ("lon", "-Infinity"),
    "lat 400 digits": ("lat", "1" + "0" * 400),
    "lon -400 digits": ("lon", "-" + "9" * 400),
    "lat 90.5": ("lat", "90.5"),
    "lon 181": ("lon", "181"),
    "lat string": ("lat", '"37.4"'),
    "lat bool": ("lat", "true"),
    "city 10k chars": ("city", json.dumps("x" * 10_000)),
    "city lone surrogate": ("city", '"Mountain \\ud800View"'),
    "city control chars": ("city", '"Mountain\\u0000View"'),
    "regionName array": ("regionName", '["California"]'),
    "countryCode 3 letters": ("countryCode", '"USA"'),
    "countryCode number": ("countryCode", "840"),
    "isp object": ("isp", '{"name": "Google"}'),
    "org deeply nested": ("org", "[" * 500 + "]" * 500),
    "mobile string": ("mobile", '"yes"'),
    "hosting number": ("hosting", "1"),
}

# Answers that cannot be used at all: a provider failure (bad_answer), with the quiet period.
NESTED = b"[" * 100_000 + b"]" * 100_000
Body = bytes | Callable[[list[str]], bytes] | None
BAD_ANSWERS: dict[str, tuple[Body, dict[str, str]]] = {
    "100000-deep arrays": (NESTED, {}),
    "100000-deep objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, {}),
    "5000-digit number": (b'[{"status": "success", "lat": ' + b"7" * 5000 + b"}]", {}),
    "not JSON": (b"<html>Bad Gateway</html>", {}),
    "not UTF-8": (b'[{"status": "success", "city": "\xff\xfe"}]', {}),
    "bare NaN": (b"NaN", {}),
    "an object": (b'{"status": "success", "countryCode": "US"}', {}),
    "no items": (b"[]", {}),
    "item is a number": (b"[42]", {}),
    "item is a string": (b'["success"]', {}),
    "item status unknown": (b'[{"status": "maybe", "countryCode": "US"}]', {}),
    "item status missing": (b'[{"countryCode": "US"}]', {}),
    "over the size limit": (
        b'[{"status": "success", "city": "' + b"x" * (MAX_ANSWER_BYTES + 10) + b'"}]',
        {},
    ),
    "Content-Length over the limit": (b"[]", {"Content-Length": str(10 * MAX_ANSWER_BYTES)}),
}


# -- the provider alone --------------------------------------------------------------------------


# The provider's fixtures are conftest.py's: `fake` (a fresh ip-api server), `clock`, `provider`.


@pytest.mark.parametrize(("field", "raw"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
async def test_an_unusable_value_is_unknown_and_the_rest_is_kept(
    provider: IpApiProvider,
    fake: IpApiServer,
    caplog: pytest.LogCaptureFixture,
    field: str,
    raw: str,
) -> None:
    fake.body = with_field(field, raw)
    with caplog.at_level(logging.WARNING, logger="sessions_geo"):
        answer = await provider.lookup(["8.8.8.8"])
    ours = OURS[field]
    expected = dataclasses.replace(GOOGLE_DNS, **{ours: None})
    assert answer == {"8.8.8.8": expected}
    assert valid_json(json.loads(expected.to_json()))
    # One line says which field was refused; the value itself is not logged.
    [line] = caplog.records
    assert ours in line.getMessage() and len(line.getMessage()) < 300
    assert_no_traceback(caplog)


@pytest.mark.parametrize(("body", "headers"), list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
async def test_an_unusable_answer_is_a_failure_with_backoff(
    provider: IpApiProvider,
    fake: IpApiServer,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    body: Body,
    headers: dict[str, str],
) -> None:
    fake.body, fake.headers = body, headers
    before = bad_answers()
    with caplog.at_level(logging.WARNING):
        assert await provider.lookup(["8.8.8.8"]) == {}
    assert bad_answers() - before == 1
    [line] = caplog.records  # one line, no traceback
    assert line.name == "sessions_geo.ipapi" and "quiet for 30 s" in line.getMessage()
    assert len(line.getMessage()) < 300
    assert_no_traceback(caplog)

    fake.reset()  # the provider is fine again, but stays alone for the quiet period
    clock.advance(FAILURE_BACKOFF_SECONDS - 1)
    assert await provider.lookup(["8.8.8.8"]) == {}
    assert len(fake.requests) == 0
    clock.advance(1.5)
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}


@pytest.mark.parametrize(
    ("ttl", "quiet"),
    [
        ("1" + "0" * 400, DEFAULT_RATE_LIMIT_SECONDS),  # not a usable number: as if absent
        ("1e3", DEFAULT_RATE_LIMIT_SECONDS),
        ("-5", DEFAULT_RATE_LIMIT_SECONDS),
        ("86400", MAX_RATE_LIMIT_SECONDS),  # a day: capped
    ],
)
async def test_an_absurd_x_ttl_neither_raises_nor_silences_lookups_for_long(
    provider: IpApiProvider, fake: IpApiServer, clock: FakeClock, ttl: str, quiet: float
) -> None:
    fake.headers = {"X-Rl": "0", "X-Ttl": ttl}
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}
    fake.reset()
    clock.advance(quiet - 1)
    assert await provider.lookup(["8.8.8.8"]) == {}
    assert len(fake.requests) == 0
    clock.advance(1.5)
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}


async def test_a_drip_fed_answer_is_a_timeout_within_geo_timeout(
    fake: IpApiServer, clock: FakeClock
) -> None:
    fake.drip = 0.05  # a few hundred bytes, one every 50 ms: many seconds in all
    provider = IpApiProvider(fake.url, timeout=0.5, clock=clock)
    before = metric("sessions_api_geo_provider_failures_total", provider="ip-api", reason="timeout")
    try:
        started = time.monotonic()
        assert await provider.lookup(["8.8.8.8", "81.2.69.142"]) == {}
        assert time.monotonic() - started < 1.0  # 2x GEO_TIMEOUT
    finally:
        await provider.aclose()
    after = metric("sessions_api_geo_provider_failures_total", provider="ip-api", reason="timeout")
    assert after - before == 1


# -- GeoLookup on the run's Redis ----------------------------------------------------------------


@asynccontextmanager
async def ipapi_lookup(
    resources: Resources, fake: IpApiServer, *, wait: float | None = None
) -> AsyncIterator[GeoLookup]:
    provider = IpApiProvider(fake.url, timeout=3.0)
    lookup = GeoLookup(
        provider,
        GeoCache(resources.store.redis, resources.store.keys, provider.name),
        ttl=60,
        failure_ttl=60,
        wait=wait,
    )
    try:
        yield lookup
    finally:
        await lookup.aclose()
        await provider.aclose()


async def cached(resources: Resources, ip: str) -> bytes | None:
    value: bytes | None = await resources.store.redis.get(resources.store.keys.geo("ip-api", ip))
    return value


def expected_geo(ip: str) -> GeoInfo:
    """What the provider makes of ip-api's real answer for ip."""
    item = trimmed(ip)
    return GeoInfo(**{ours: item[theirs] for theirs, ours in OURS.items()})


async def test_16_concurrent_misses_make_one_provider_call(resources: Resources) -> None:
    [ip] = fresh_ips(1)
    async with fake_ipapi() as fake, ipapi_lookup(resources, fake) as lookup:
        fake.delay = 0.3  # all 16 miss the cache while the first fetch is out
        answers = await asyncio.gather(*(lookup.many([ip]) for _ in range(16)))
        assert answers == [[expected_geo(ip)]] * 16
        assert len(fake.requests) == 1


async def test_a_cancelled_waiter_does_not_cancel_the_fetch_for_the_others(
    resources: Resources,
) -> None:
    [ip] = fresh_ips(1)
    async with fake_ipapi() as fake, ipapi_lookup(resources, fake) as lookup:
        fake.delay = 0.5
        first = asyncio.create_task(lookup.many([ip]))
        await asyncio.sleep(0.1)  # the fetch is out
        second = asyncio.create_task(lookup.many([ip]))
        await asyncio.sleep(0.1)
        first.cancel()
        assert await second == [expected_geo(ip)]
        assert first.cancelled()
        assert len(fake.requests) == 1
        assert GeoInfo.from_json(await cached(resources, ip) or b"") == expected_geo(ip)


async def test_a_slow_provider_is_waited_for_geo_wait_then_fills_the_cache(
    resources: Resources,
) -> None:
    [ip] = fresh_ips(1)
    none_before = metric("sessions_api_geo_ips_total", source="none")
    async with fake_ipapi() as fake, ipapi_lookup(resources, fake, wait=0.2) as lookup:
        fake.delay = 2.0
        started = time.monotonic()
        assert await lookup.many([ip]) == [None]  # not yet located
        assert time.monotonic() - started < 1.5  # well before the provider answers
        assert metric("sessions_api_geo_ips_total", source="none") - none_before == 1

        deadline = time.monotonic() + 10
        while await cached(resources, ip) is None:
            assert time.monotonic() < deadline, "the answer was never cached"
            await asyncio.sleep(0.05)
        assert await lookup.many([ip]) == [expected_geo(ip)]
        assert len(fake.requests) == 1


async def test_closing_the_lookup_cancels_a_running_fetch_cleanly(resources: Resources) -> None:
    [ip] = fresh_ips(1)
    async with fake_ipapi() as fake:
        fake.delay = 30  # hangs until released
        async with ipapi_lookup(resources, fake, wait=0.1) as lookup:
            assert await lookup.many([ip]) == [None]
            assert len(fake.requests) == 1
        # Closed: the fetch was cancelled (no warning, no late cache write), and nothing new
        # starts.
        assert await lookup.many([ip]) == [None]
        fake.release()
        assert len(fake.requests) == 1
        assert await cached(resources, ip) is None


class NaNProvider:
    """A provider that breaks the rules: it returns a GeoInfo it did not check."""

    name = "nan-provider"
    max_batch = 100

    async def lookup(self, ips: Sequence[str]) -> Mapping[str, GeoInfo | None]:
        return {ip: GeoInfo(country_code="US", lat=math.nan) for ip in ips}

    async def aclose(self) -> None:
        return None


async def test_what_a_provider_answers_is_checked_before_it_is_cached_or_shown(
    resources: Resources,
) -> None:
    [ip] = fresh_ips(1)
    provider = NaNProvider()
    lookup = GeoLookup(
        provider,
        GeoCache(resources.store.redis, resources.store.keys, provider.name),
        ttl=60,
        failure_ttl=60,
    )
    try:
        assert await lookup.many([ip]) == [None]
    finally:
        await lookup.aclose()
    key = resources.store.keys.geo(provider.name, ip)
    assert await resources.store.redis.get(key) is None


# Entries an older version, another writer or a damaged Redis could have left.
POISON = {
    "Infinity": b"Infinity",
    "NaN": b"NaN",
    "lat Infinity": b'{"countryCode": "US", "lat": Infinity}',
    "lat 1e999": b'{"country_code": "US", "lat": 1e999}',
    "lat out of range": b'{"country_code": "US", "lat": 123.0}',
    "lat as int": b'{"country_code": "US", "lat": 52}',
    "lat as string": b'{"country_code": "US", "lat": "52.5"}',
    "country number": b'{"country_code": 42}',
    "country lower case": b'{"country_code": "us"}',
    "city too long": b'{"city": "' + b"x" * (MAX_TEXT + 1) + b'"}',
    "flag as int": b'{"is_mobile": 1}',
    "array": b"[1, 2]",
    "string": b'"hello"',
    "number": b"42",
    "garbage JSON": b"{not json",
    "not UTF-8": b"\xff\xfe\xfd",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("entry", list(POISON.values()), ids=list(POISON))
async def test_a_cache_entry_that_fails_the_checks_is_a_miss_and_is_repaired(
    resources: Resources, caplog: pytest.LogCaptureFixture, entry: bytes
) -> None:
    poisoned, good = fresh_ips(2)
    async with fake_ipapi() as fake, ipapi_lookup(resources, fake) as lookup:
        assert await lookup.many([good]) == [expected_geo(good)]
        fake.reset()
        await resources.store.redis.set(resources.store.keys.geo("ip-api", poisoned), entry)
        with caplog.at_level(logging.INFO, logger="sessions_geo"):
            assert await lookup.many([poisoned, good]) == [
                expected_geo(poisoned),
                expected_geo(good),
            ]
        assert fake.queried_ips == [poisoned]  # the good entry next to it is still used
        repaired = await cached(resources, poisoned)
        assert repaired is not None and GeoInfo.from_json(repaired) == expected_geo(poisoned)
        assert_no_traceback(caplog)


@pytest.mark.parametrize("entry", list(POISON.values()), ids=list(POISON))
def test_an_entry_that_fails_the_checks_fails_them_on_every_read(entry: bytes) -> None:
    """Decoded entries are kept per process; a refusal never is."""
    for text in (entry, entry.decode("utf-8", "replace")):
        for _ in range(2):
            with pytest.raises((ValueError, TypeError, RecursionError)):
                GeoInfo.from_json(text)


def test_an_entry_reads_the_same_every_time_whatever_its_length() -> None:
    geo = GeoInfo(city="Zürich", country_code="CH", lat=47.37, lon=8.54, is_mobile=False)
    text = geo.to_json()
    # Fields it does not know are ignored, however long (past what is kept decoded).
    long_text = text[:-1] + ',"note":"' + "x" * 10_000 + '"}'
    for entry in (text, text.encode(), long_text, long_text.encode()):
        assert GeoInfo.from_json(entry) == geo
        assert GeoInfo.from_json(entry) == geo
    assert GeoInfo.from_json("null") is None


async def repaired(resources: Resources, ip: str, lookup: GeoLookup | None = None) -> None:
    """Waits for the lookup's cache write (it follows the answer) to replace the poison, and,
    given the lookup, for its fetch to be over: a request arriving while it is still under way
    would join it rather than read the cache."""
    deadline = time.monotonic() + 5
    while await cached(resources, ip) == POISON["lat as int"] or (
        lookup is not None and lookup._fetching
    ):
        assert time.monotonic() < deadline, "the entry was never repaired"
        await asyncio.sleep(0.01)


async def test_a_poisoned_entry_is_a_miss_each_time_it_is_found(resources: Resources) -> None:
    """An entry that fails the checks, found again after the lookup repaired it, is again a miss:
    the text once refused is never taken from a cache of decoded entries."""
    [ip] = fresh_ips(1)
    key = resources.store.keys.geo("ip-api", ip)
    async with fake_ipapi() as fake, ipapi_lookup(resources, fake) as lookup:
        for _ in range(2):
            fake.reset()
            await resources.store.redis.set(key, POISON["lat as int"])
            assert await lookup.many([ip]) == [expected_geo(ip)]
            assert fake.queried_ips == [ip]
            await repaired(resources, ip, lookup)
        fake.reset()
        assert await lookup.many([ip]) == [expected_geo(ip)]  # the repaired entry is used
        assert fake.queried_ips == []


# -- a real app ----------------------------------------------------------------------------------


async def rest_page(base_url: str, token: str) -> dict[str, dict[str, Any] | None]:
    """client_ip -> geo on GET /v1/users/me/sessions, which must answer 200 with strict JSON."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.get(ROUTE, headers=cookie(token))
    assert response.status_code == 200, response.text
    body = json.loads(response.content, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    return {s["client_ip"]: s["geo"] for s in body["sessions"] + body["history"]}


async def graphql_page(base_url: str, token: str) -> dict[str, dict[str, Any] | None]:
    """clientIp -> geo (every field) on GraphQL, which must answer without errors."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={"query": QUERY},
            headers={**cookie(token), "accept": GRAPHQL_RESPONSE},
        )
    assert response.status_code == 200, response.text
    body = json.loads(response.content, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert "errors" not in body, body
    me = body["data"]["me"]
    rows = {s["clientIp"]: s["geo"] for s in me["sessions"]}
    rows.update({e["node"]["clientIp"]: e["node"]["geo"] for e in me["history"]["edges"]})
    return rows


def assert_rest_geo(geo: dict[str, Any] | None, ip: str, *, unknown: str | None = None) -> None:
    """geo is ip-api's real answer for ip, with the field `unknown` (ip-api's name) null."""
    item = trimmed(ip)
    expected = {OURS[k]: item[k] for k in OURS}
    if unknown is not None:
        expected[OURS[unknown]] = None
    assert geo == expected


APP_FIELD_TRIGGERS = {k: BAD_VALUES[k] for k in ("lat 1e999", "lat NaN", "lat 400 digits")}
APP_FIELD_TRIGGERS["city lone surrogate"] = BAD_VALUES["city lone surrogate"]


@pytest.mark.parametrize(
    ("field", "raw"), list(APP_FIELD_TRIGGERS.values()), ids=list(APP_FIELD_TRIGGERS)
)
async def test_app_an_unusable_value_is_null_on_rest_and_graphql_and_in_the_cache(
    base_settings: Settings,
    resources: Resources,
    caplog: pytest.LogCaptureFixture,
    field: str,
    raw: str,
) -> None:
    [ip] = fresh_ips(1)
    token = await make_user(resources, active=[ip])
    async with fake_ipapi() as fake:
        fake.body = with_field(field, raw)
        with caplog.at_level(logging.WARNING), own_app(base_settings, fake) as app:
            first = (await rest_page(app, token))[ip]
            assert_rest_geo(first, ip, unknown=field)
            # Cached as checked: GraphQL (every field selected) shows the same, without error.
            geo = (await graphql_page(app, token))[ip]
            assert geo is not None and geo[field] is None and geo["countryCode"] is not None
            assert (await rest_page(app, token))[ip] == first
            assert len(fake.requests) == 1
    entry = await cached(resources, ip)
    assert entry is not None
    stored = GeoInfo.from_json(entry)
    assert stored is not None and getattr(stored, field) is None
    assert_no_traceback(caplog)


APP_ANSWER_TRIGGERS = {
    k: BAD_ANSWERS[k] for k in ("100000-deep arrays", "item is a string", "over the size limit")
}
# The answer itself is fine (and used); the rate-limit header is absurd.
APP_ANSWER_TRIGGERS["400-digit X-Ttl"] = (None, {"X-Rl": "0", "X-Ttl": "1" + "0" * 400})


@pytest.mark.parametrize(
    ("body", "headers"), list(APP_ANSWER_TRIGGERS.values()), ids=list(APP_ANSWER_TRIGGERS)
)
async def test_app_an_unusable_answer_gives_null_geo_and_a_quiet_provider(
    base_settings: Settings,
    resources: Resources,
    caplog: pytest.LogCaptureFixture,
    body: Body,
    headers: dict[str, str],
) -> None:
    """The page answers 200, nothing unchecked is cached, and the provider is left alone for a
    while (a failure's quiet period, or the rate limit's) instead of being asked on every page."""
    first, later = fresh_ips(2)
    token_first = await make_user(resources, active=[first])
    token_later = await make_user(resources, active=[later])
    failure = "X-Ttl" not in headers
    before = bad_answers()
    async with fake_ipapi() as fake:
        fake.body, fake.headers = body, headers
        with caplog.at_level(logging.WARNING), own_app(base_settings, fake) as app:
            rest = (await rest_page(app, token_first))[first]
            assert (rest is None) == failure
            assert ((await graphql_page(app, token_first))[first] is None) == failure
            assert await rest_page(app, token_later) == {later: None}
            assert await graphql_page(app, token_later) == {later: None}
            assert len(fake.requests) == 1
    assert bad_answers() - before == (1 if failure else 0)
    entries = [await cached(resources, first), await cached(resources, later)]
    if failure:
        assert entries == [None, None]
    else:
        assert entries[0] is not None and GeoInfo.from_json(entries[0]) is not None
        assert entries[1] is None
    assert_no_traceback(caplog)


async def test_app_a_poisoned_cache_entry_is_looked_up_again_and_repaired(
    ipapi_app: str, ipapi: IpApiServer, resources: Resources
) -> None:
    """An "Infinity" left in the cache (as an older version wrote for `"lat": 1e999`) used to
    answer 503 for every user with that IP, for a week."""
    ips = fresh_ips(2)
    token = await make_user(resources, active=ips)
    for ip, entry in zip(
        ips, (b"Infinity", b'{"country_code": "US", "lat": Infinity}'), strict=True
    ):
        await resources.store.redis.set(resources.store.keys.geo("ip-api", ip), entry)
    ipapi.reset()
    page = await rest_page(ipapi_app, token)
    for ip in ips:
        assert_rest_geo(page[ip], ip)
        repaired = await cached(resources, ip)
        assert repaired is not None and GeoInfo.from_json(repaired) == expected_geo(ip)
    assert sorted(ipapi.queried_ips) == sorted(ips)
    assert len(ipapi.requests) == 1
    assert (await graphql_page(ipapi_app, token)).keys() == set(ips)


async def test_app_16_concurrent_pages_make_one_provider_call_for_a_new_ip(
    base_settings: Settings, resources: Resources
) -> None:
    [ip] = fresh_ips(1)
    tokens = [await make_user(resources, active=[ip]) for _ in range(16)]
    async with fake_ipapi() as fake:
        fake.delay = 0.5  # every page misses the cache while the first lookup is out
        with own_app(base_settings, fake, geo_wait=3.0, geo_timeout=3.0) as app:
            pages = await asyncio.gather(
                *(
                    (rest_page if i % 2 else graphql_page)(app, token)
                    for i, token in enumerate(tokens)
                )
            )
            assert len(fake.requests) == 1
    assert all(page[ip] is not None for page in pages)


async def test_app_a_hanging_provider_holds_a_page_for_geo_wait_only(
    base_settings: Settings, resources: Resources, caplog: pytest.LogCaptureFixture
) -> None:
    """The first page answers after GEO_WAIT with geo null ("not yet located"); the lookup goes
    on, and a later page shows the answer. One provider call in all. A lookup still running
    when the app stops is cancelled quietly."""
    ip, left_running = fresh_ips(2)
    token = await make_user(resources, active=[ip])
    token_left = await make_user(resources, active=[left_running])
    async with fake_ipapi() as fake:
        fake.delay = 2.5
        with (
            caplog.at_level(logging.WARNING),
            own_app(base_settings, fake, geo_wait=0.2, geo_timeout=5.0) as app,
        ):
            started = time.monotonic()
            assert await rest_page(app, token) == {ip: None}
            assert time.monotonic() - started < 2.0  # not the provider's 2.5 s
            assert await graphql_page(app, token) == {ip: None}

            deadline = time.monotonic() + 10
            while (page := await rest_page(app, token))[ip] is None:
                assert time.monotonic() < deadline, "the answer never arrived"
                await asyncio.sleep(0.1)
            assert_rest_geo(page[ip], ip)
            assert len(fake.requests) == 1

            assert await rest_page(app, token_left) == {left_running: None}
            assert len(fake.requests) == 2  # and the app stops while that lookup hangs
    assert await cached(resources, left_running) is None
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert_no_traceback(caplog)

"""IpApiProvider against a real loopback server that speaks ip-api's batch protocol."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from sessions_geo.ipapi import FAILURE_BACKOFF_SECONDS, IpApiProvider
from sessions_geo.model import GeoInfo
from tests.ipapi_provider import GOOGLE_DNS, FakeClock
from tests.ipapi_server import IpApiServer, Mode

KEY = "s3cret-pro-key"


def many_ips(n: int) -> list[str]:
    return [f"11.0.{i // 250}.{i % 250 + 1}" for i in range(n)]


async def test_maps_every_field(provider: IpApiProvider) -> None:
    answer = await provider.lookup(
        ["8.8.8.8", "81.2.69.142", "2a00:1450:4001:80b::200e", "92.40.200.7"]
    )
    assert answer["8.8.8.8"] == GOOGLE_DNS
    assert answer["81.2.69.142"] == GeoInfo(
        city="London",
        region_name="England",
        country_code="GB",
        lat=51.5142,
        lon=-0.0931,
        isp="Andrews & Arnold Ltd",
        org="Andrews & Arnold Ltd",
        is_mobile=False,
        is_proxy=False,
        is_hosting=False,
    )
    # ip-api's empty strings mean "unknown"; whole-number coordinates are still floats.
    germany = answer["2a00:1450:4001:80b::200e"]
    assert germany == GeoInfo(
        country_code="DE",
        lat=51.0,
        lon=9.0,
        isp="Google LLC",
        is_mobile=False,
        is_proxy=False,
        is_hosting=True,
    )
    assert germany is not None and isinstance(germany.lat, float)
    mobile = answer["92.40.200.7"]
    assert mobile is not None and mobile.is_mobile is True and mobile.is_proxy is True


async def test_asks_only_for_the_fields_it_uses(provider: IpApiProvider, fake: IpApiServer) -> None:
    await provider.lookup(["8.8.8.8"])
    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/batch")
    assert request.body == [{"query": "8.8.8.8"}]
    assert set(request.params) == {"fields"}  # and no key on the free tier
    assert set(request.params["fields"][0].split(",")) == {
        "status",
        "message",
        "query",
        "city",
        "regionName",
        "countryCode",
        "lat",
        "lon",
        "isp",
        "org",
        "mobile",
        "proxy",
        "hosting",
    }


async def test_sends_the_key_when_configured(fake: IpApiServer, clock: FakeClock) -> None:
    provider = IpApiProvider(fake.url + "/", key=KEY, clock=clock)
    try:
        answer = await provider.lookup(["8.8.8.8"])
    finally:
        await provider.aclose()
    assert answer == {"8.8.8.8": GOOGLE_DNS}
    (request,) = fake.requests
    assert request.path == "/batch"
    assert request.params["key"] == [KEY]
    assert "fields" in request.params


async def test_failure_log_has_url_but_never_the_key(
    fake: IpApiServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.mode = "error"
    provider = IpApiProvider(fake.url, key=KEY, clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="sessions_geo.ipapi"):
            assert await provider.lookup(["8.8.8.8"]) == {}
    finally:
        await provider.aclose()
    assert f"{fake.url}/batch " in caplog.text
    assert "500" in caplog.text
    assert KEY not in caplog.text
    assert "fields=" not in caplog.text


async def test_fail_items_map_to_none(provider: IpApiProvider) -> None:
    answer = await provider.lookup(["10.1.2.3", "127.0.0.1", "8.8.8.8", "fd00::1"])
    assert answer == {"10.1.2.3": None, "127.0.0.1": None, "8.8.8.8": GOOGLE_DNS, "fd00::1": None}


async def test_100_ips_in_one_request(provider: IpApiProvider, fake: IpApiServer) -> None:
    ips = many_ips(100)
    answer = await provider.lookup(ips)
    assert len(fake.requests) == 1
    assert fake.queried_ips == ips
    assert list(answer) == ips
    assert all(isinstance(geo, GeoInfo) and geo.country_code for geo in answer.values())


async def test_more_than_100_ips_is_a_caller_error(
    provider: IpApiProvider, fake: IpApiServer
) -> None:
    with pytest.raises(ValueError, match="100"):
        await provider.lookup(many_ips(101))
    assert fake.requests == []


async def test_nothing_to_look_up_sends_nothing(provider: IpApiProvider, fake: IpApiServer) -> None:
    assert await provider.lookup([]) == {}
    assert fake.requests == []


async def test_quiet_after_last_allowed_request_until_ttl_passes(
    provider: IpApiProvider, fake: IpApiServer, clock: FakeClock
) -> None:
    fake.remaining, fake.ttl = 1, 40
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}  # answered X-Rl: 0

    assert await provider.lookup(["81.2.69.142"]) == {}
    clock.advance(39)
    assert await provider.lookup(["81.2.69.142"]) == {}
    assert len(fake.requests) == 1  # never got a 429: nothing was sent

    clock.advance(1.5)
    fake.remaining = 15  # the fake's window has reset too
    answer = await provider.lookup(["81.2.69.142"])
    assert set(answer) == {"81.2.69.142"}
    assert len(fake.requests) == 2


async def test_quiet_after_429_until_ttl_passes(
    provider: IpApiProvider, fake: IpApiServer, clock: FakeClock
) -> None:
    fake.remaining, fake.ttl = 0, 20
    assert await provider.lookup(["8.8.8.8"]) == {}
    clock.advance(19)
    assert await provider.lookup(["8.8.8.8"]) == {}
    assert len(fake.requests) == 1

    clock.advance(1.5)
    fake.remaining = 15
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}
    assert len(fake.requests) == 2


@pytest.mark.parametrize("rate_headers", [True, False])
async def test_429_without_ttl_waits_a_minute(
    provider: IpApiProvider, fake: IpApiServer, clock: FakeClock, rate_headers: bool
) -> None:
    fake.remaining, fake.ttl, fake.rate_headers = 0, None, rate_headers
    assert await provider.lookup(["8.8.8.8"]) == {}
    fake.remaining = 15
    clock.advance(59)
    assert await provider.lookup(["8.8.8.8"]) == {}
    assert len(fake.requests) == 1
    clock.advance(1.5)
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}


@pytest.mark.parametrize("own_client", [True, False])
async def test_timeout_gives_empty_answer_then_backs_off(
    fake: IpApiServer, clock: FakeClock, own_client: bool
) -> None:
    fake.delay = 5.0
    # A client passed in (httpx's default timeout is 5 s) gets the provider's timeout too.
    client = None if own_client else httpx.AsyncClient()
    provider = IpApiProvider(fake.url, timeout=0.2, client=client, clock=clock)
    try:
        started = time.monotonic()
        assert await provider.lookup(["8.8.8.8"]) == {}
        assert time.monotonic() - started < 2.0  # did not wait for the slow server

        fake.delay = 0.0
        assert await provider.lookup(["8.8.8.8"]) == {}  # backing off
        clock.advance(FAILURE_BACKOFF_SECONDS - 1)
        assert await provider.lookup(["8.8.8.8"]) == {}
        assert len(fake.requests) == 1

        clock.advance(1.5)
        assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}
        assert len(fake.requests) == 2
    finally:
        await provider.aclose()
        if client is not None:
            await client.aclose()


@pytest.mark.parametrize("mode", ["error", "broken-json"])
async def test_bad_answer_gives_empty_answer_then_backs_off(
    provider: IpApiProvider, fake: IpApiServer, clock: FakeClock, mode: Mode
) -> None:
    fake.mode = mode
    assert await provider.lookup(["8.8.8.8", "81.2.69.142"]) == {}
    fake.mode = "ok"
    assert await provider.lookup(["8.8.8.8"]) == {}
    assert len(fake.requests) == 1
    clock.advance(FAILURE_BACKOFF_SECONDS + 0.5)
    assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}


async def test_unreachable_server_gives_empty_answer(clock: FakeClock) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = IpApiProvider(f"http://127.0.0.1:{port}", timeout=1.0, clock=clock)
    try:
        assert await provider.lookup(["8.8.8.8"]) == {}
    finally:
        await provider.aclose()


async def test_leaves_a_client_it_was_given_open(fake: IpApiServer) -> None:
    async with httpx.AsyncClient() as client:
        provider = IpApiProvider(fake.url, client=client)
        assert await provider.lookup(["8.8.8.8"]) == {"8.8.8.8": GOOGLE_DNS}
        await provider.aclose()
        assert not client.is_closed


async def test_fake_server_speaks_the_batch_protocol(fake: IpApiServer) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as client:
        too_many = await client.post("/batch", json=[{"query": ip} for ip in many_ips(101)])
        assert too_many.status_code == 422
        assert too_many.text == "too many queries\n"

        response = await client.post(
            "/batch",
            params={"fields": "status,message,countryCode"},
            json=["10.0.0.1", {"query": "127.0.0.1"}, "no-ip", "8.8.8.8"],
        )
    assert response.status_code == 200
    assert response.headers["X-Rl"] == "15" and response.headers["X-Ttl"] == "60"
    assert response.json() == [
        {"status": "fail", "message": "private range"},
        {"status": "fail", "message": "reserved range"},
        {"status": "fail", "message": "invalid query"},
        {"status": "success", "countryCode": "US"},
    ]

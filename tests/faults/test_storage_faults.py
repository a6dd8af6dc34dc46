"""Hung, killed and restarted storage: every wait is bounded, and a restart costs no request.

Every wait has a bound: under a hung (SIGSTOPped) Postgres or Redis, a burst of concurrent
requests answers 503 within about STORAGE_TIMEOUT, /readyz names the hung dependency within
READY_TIMEOUT, REQUEST_TIMEOUT bounds a whole request, and the page answers again once the server
resumes, without a restart. A restart of Redis or Postgres costs no user request: stale pooled
connections are replaced without failing one.

These tests pause, kill and restart the run's own servers (own_postgres, own_redis), and always
leave them running. Bounds are checked loosely (< 2x the setting): they prove "no hang".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from tests.app_client import JSON, ROUTE, assert_ready, cookie
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.infra import PostgresServer, RedisServer
from tests.packages import is_ours
from tests.pg_locks import until_waiting_on_a_lock
from tests.servers import serve

# The bounded app: short bounds, and pools far smaller than the bursts below, so that most
# requests of a burst wait for a pooled connection.
STORAGE_TIMEOUT = 2.0
POOL_ACQUIRE_TIMEOUT = 1.0  # below STORAGE_TIMEOUT, as the defaults are
POOL_SIZE = 4
READY_TIMEOUT = 1.0
REQUEST_TIMEOUT = 1.0  # the impatient app's REQUEST_TIMEOUT (its storage bounds are far longer)
CONCURRENT = 24
BURST = 32
GRAPHQL_PAGE = "{ me { id sessions { id } history(first: 5) { edges { node { id } } } } }"


@pytest.fixture(scope="session")
def bounded_server(fragile_settings: Settings, fragile_resources: Resources) -> Iterator[str]:
    """The app on the run's own servers, with short storage bounds and small pools."""
    settings = fragile_settings.model_copy(
        update={
            "storage_timeout": STORAGE_TIMEOUT,
            "pool_acquire_timeout": POOL_ACQUIRE_TIMEOUT,
            "pg_pool_size": POOL_SIZE,
            "redis_pool_size": POOL_SIZE,
            "ready_timeout": READY_TIMEOUT,
        }
    )
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="session")
def impatient_server(fragile_settings: Settings, fragile_resources: Resources) -> Iterator[str]:
    """The app on the run's own servers, whose whole-request bound comes before any storage
    bound: what answers is the request timeout."""
    settings = fragile_settings.model_copy(
        update={
            "storage_timeout": 30.0,
            "storage_connect_timeout": 30.0,
            "pool_acquire_timeout": 30.0,
            "request_timeout": REQUEST_TIMEOUT,
        }
    )
    with serve(settings) as url:
        yield url


@pytest.fixture
async def bounded(bounded_server: str) -> AsyncIterator[httpx.AsyncClient]:
    # The client's own timeout is far beyond every bound checked here: a hang shows as a
    # failed assertion on the elapsed time, not as a test that never ends.
    async with httpx.AsyncClient(base_url=bounded_server, timeout=30) as c:
        yield c


@pytest.fixture
async def impatient(impatient_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=impatient_server, timeout=30) as c:
        yield c


async def signed_in(users: Users, count: int) -> list[str]:
    """Tokens of `count` fresh users, one session each."""
    return [(await users.session(users.new_id())).token for _ in range(count)]


async def timed_burst(
    client: httpx.AsyncClient, tokens: list[str], *, graphql: bool = False
) -> tuple[list[httpx.Response | BaseException], float]:
    """One request per token, all at once: the answers (or transport errors), and how long the
    slowest took."""

    async def one(token: str) -> httpx.Response:
        if graphql:
            return await client.post(
                "/graphql",
                json={"query": GRAPHQL_PAGE},
                headers={**cookie(token), "accept": JSON},
            )
        return await client.get(ROUTE, headers=cookie(token))

    started = time.monotonic()
    answers = await asyncio.gather(*(one(t) for t in tokens), return_exceptions=True)
    return list(answers), time.monotonic() - started


def statuses(answers: list[httpx.Response | BaseException]) -> list[int | str]:
    return [a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in answers]


def assert_unavailable(answer: httpx.Response | BaseException) -> None:
    assert isinstance(answer, httpx.Response), repr(answer)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "unavailable"
    assert answer.headers["cache-control"] == "no-store"
    assert_rest_error(answer, 503, "unavailable")


def assert_graphql_error(answer: httpx.Response | BaseException) -> dict[str, Any]:
    """A GraphQL answer that reports an error (whatever else it carries)."""
    assert isinstance(answer, httpx.Response), repr(answer)
    assert answer.status_code in (200, 503), answer.text
    body: dict[str, Any] = answer.json()
    assert body["errors"], body
    return body


async def assert_page_answers(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(ROUTE, headers=cookie(token))
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 1


# -- a hung dependency: every request answers within the storage bound ---------------------------


async def test_a_burst_beyond_the_pool_sizes_waits_its_turn(
    bounded: httpx.AsyncClient, fragile_users: Users
) -> None:
    """Blocking pools: with every pooled connection busy, a request waits for one (within
    POOL_ACQUIRE_TIMEOUT) instead of failing."""
    tokens = await signed_in(fragile_users, BURST)
    answers, _ = await timed_burst(bounded, tokens)
    assert statuses(answers) == [200] * BURST


@pytest.mark.parametrize("hung", ["postgres", "redis"])
async def test_a_hung_dependency_answers_503_within_the_storage_timeout(
    bounded: httpx.AsyncClient,
    fragile_users: Users,
    own_postgres: PostgresServer,
    own_redis: RedisServer,
    hung: str,
) -> None:
    server = own_postgres if hung == "postgres" else own_redis
    tokens = await signed_in(fragile_users, CONCURRENT)
    await assert_page_answers(bounded, tokens[0])  # a pooled connection exists and is warm
    with server.paused():
        answers, elapsed = await timed_burst(bounded, tokens)
        graphql, graphql_elapsed = await timed_burst(bounded, tokens[:4], graphql=True)
    assert elapsed < 2 * STORAGE_TIMEOUT, (elapsed, statuses(answers))
    for answer in answers:
        assert_unavailable(answer)
    assert graphql_elapsed < 2 * STORAGE_TIMEOUT, (graphql_elapsed, statuses(graphql))
    for answer in graphql:
        assert_graphql_error(answer)
    # Resumed: the very next request works, without a restart of anything.
    await assert_page_answers(bounded, tokens[0])


@pytest.mark.parametrize("hung", ["postgres", "redis"])
async def test_readyz_names_the_hung_dependency_within_its_bound(
    bounded: httpx.AsyncClient, own_postgres: PostgresServer, own_redis: RedisServer, hung: str
) -> None:
    server = own_postgres if hung == "postgres" else own_redis
    other = "redis" if hung == "postgres" else "postgres"
    assert_ready(await bounded.get("/readyz"))
    with server.paused():
        started = time.monotonic()
        response = await bounded.get("/readyz")
        elapsed = time.monotonic() - started
    assert elapsed < 2 * READY_TIMEOUT, elapsed
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body[hung] == "unavailable"
    assert body[other] == "ok"
    assert response.headers["cache-control"] == "no-store"
    response = await bounded.get("/readyz")
    assert response.status_code == 200, response.text
    assert_ready(response)


async def test_request_timeout_bounds_the_whole_request(
    impatient: httpx.AsyncClient, fragile_users: Users, own_redis: RedisServer
) -> None:
    """Storage bounds far longer than REQUEST_TIMEOUT: the request bound answers, in each
    route's own error shape."""
    tokens = await signed_in(fragile_users, 4)
    await assert_page_answers(impatient, tokens[0])
    with own_redis.paused():
        answers, elapsed = await timed_burst(impatient, tokens)
        graphql, graphql_elapsed = await timed_burst(impatient, tokens, graphql=True)
    assert elapsed < 2 * REQUEST_TIMEOUT, (elapsed, statuses(answers))
    for answer in answers:
        assert_unavailable(answer)
    assert graphql_elapsed < 2 * REQUEST_TIMEOUT, (graphql_elapsed, statuses(graphql))
    for answer in graphql:
        assert isinstance(answer, httpx.Response)
        assert answer.status_code == 503, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE", body
    await assert_page_answers(impatient, tokens[0])


async def test_a_body_that_does_not_arrive_is_the_clients_timeout_not_ours(
    impatient_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends half a body and then nothing gets 408 once REQUEST_TIMEOUT is up,
    logged at debug level only: anyone could otherwise fill the log with outage warnings."""
    host, port = impatient_server.removeprefix("http://").split(":")
    head = (
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head.encode() + b'{"query":')
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(65536), 4 * REQUEST_TIMEOUT)
        finally:
            writer.close()
    elapsed = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer
    assert b'"The request body did not arrive in time."' in rest
    # GraphQL's shape, as every HTTP-level error of /graphql.
    [error] = json.loads(rest.partition(b"\r\n\r\n")[2])["errors"]
    assert error["extensions"] == {"code": "REQUEST_TIMEOUT"}
    assert b"connection: close" in rest.lower() and b"cache-control: no-store" in rest.lower()
    assert elapsed < 2 * REQUEST_TIMEOUT + 1, elapsed
    ours = [r for r in caplog.records if is_ours(r.name)]
    assert ours and all(r.levelno <= logging.DEBUG for r in ours), [r.getMessage() for r in ours]


async def test_a_read_only_redis_is_an_outage_not_a_bug(
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis turned replica (a failover under way) answers reads and refuses writes: a revoke
    answers UNAVAILABLE / 503 with one warning line, never "Unexpected error." and a traceback,
    and changes nothing."""
    user_id = fragile_users.new_id()
    current = await fragile_users.session(user_id)
    other = await fragile_users.session(user_id)
    own_redis.cli("REPLICAOF", "127.0.0.1", "1")  # a master that never answers: data is kept
    try:
        with caplog.at_level(logging.WARNING):
            rest = await fragile_client.delete(ROUTE, headers=cookie(current.token))
            graphql = await fragile_client.post(
                "/graphql",
                json={"query": "mutation { revokeOtherSessions }"},
                headers={**cookie(current.token), "accept": JSON},
            )
    finally:
        own_redis.cli("REPLICAOF", "NO", "ONE")
    assert_unavailable(rest)
    [error] = graphql.json()["errors"]
    assert error["extensions"]["code"] == "UNAVAILABLE", error
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r for r in caplog.records if "redis unavailable" in r.getMessage()]
    # Nothing was revoked: both sessions are still listed.
    page = await fragile_client.get(ROUTE, headers=cookie(current.token))
    assert page.status_code == 200, page.text
    assert {s["token_suffix"] for s in page.json()["sessions"]} == {
        current.record.token_suffix,
        other.record.token_suffix,
    }


async def test_the_app_starts_while_postgres_is_down_and_serves_once_it_is_back(
    fragile_settings: Settings, fragile_users: Users, own_postgres: PostgresServer
) -> None:
    """No connection is opened at start: the app starts, /readyz names Postgres, the page
    answers 503, and all of it recovers when Postgres comes up, without a restart."""
    token = (await fragile_users.session(fragile_users.new_id())).token
    settings = fragile_settings.model_copy(update={"ready_timeout": READY_TIMEOUT})
    own_postgres.kill()
    try:
        with serve(settings) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                response = await client.get("/readyz")
                assert response.status_code == 503, response.text
                assert response.json()["postgres"] == "unavailable"
                assert response.json()["redis"] == "ok"
                assert_unavailable(await client.get(ROUTE, headers=cookie(token)))
                own_postgres.start()
                assert_ready(await client.get("/readyz"))
                await assert_page_answers(client, token)
    finally:
        if own_postgres.process is None:
            own_postgres.start()


# -- a restart costs no request ------------------------------------------------------------------


async def test_a_redis_restart_costs_no_request(
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    fragile_resources: Resources,
    own_redis: RedisServer,
) -> None:
    tokens = await signed_in(fragile_users, BURST)
    # A burst first, so that the app's Redis pool holds many connections, all soon stale.
    answers, _ = await timed_burst(fragile_client, tokens)
    assert statuses(answers) == [200] * BURST
    own_redis.kill()
    own_redis.start()
    # Memory-only: the sessions went with the old server. Put them back, as an operator would.
    assert (await fragile_resources.store.restore_active()).restored >= BURST
    answers, _ = await timed_burst(fragile_client, tokens)
    assert statuses(answers) == [200] * BURST


async def test_a_postgres_restart_costs_no_request(
    fragile_client: httpx.AsyncClient, fragile_users: Users, own_postgres: PostgresServer
) -> None:
    tokens = await signed_in(fragile_users, BURST)
    answers, _ = await timed_burst(fragile_client, tokens)
    assert statuses(answers) == [200] * BURST
    own_postgres.kill()
    own_postgres.start()
    answers, _ = await timed_burst(fragile_client, tokens)
    assert statuses(answers) == [200] * BURST
    graphql, _ = await timed_burst(fragile_client, tokens, graphql=True)
    assert statuses(graphql) == [200] * BURST
    assert all("errors" not in a.json() for a in graphql if isinstance(a, httpx.Response))


async def test_a_postgres_connection_dropped_under_a_read_costs_no_request(
    fragile_client: httpx.AsyncClient, fragile_users: Users, own_postgres: PostgresServer
) -> None:
    """The backend serving the page's history query is terminated while the query runs (what a
    restart or a failover does to statements in flight): the read is retried once on a fresh
    connection, and the page answers."""
    token = (await fragile_users.session(fragile_users.new_id())).token
    await assert_page_answers(fragile_client, token)
    locker = await asyncpg.connect(own_postgres.dsn("sessions"))
    try:
        # The history query waits for this lock: a statement surely in flight.
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        page = asyncio.ensure_future(fragile_client.get(ROUTE, headers=cookie(token)))
        # Found before the app's own 5 s statement bound.
        waiting = await until_waiting_on_a_lock(locker, "%FROM sessions%", within=4)
        await locker.fetch(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", waiting
        )
        await locker.execute("ROLLBACK")
        response = await page
    finally:
        await locker.close()
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 1


# -- Redis answering reads but holding writes ------------------------------------------------------


async def test_the_page_answers_while_redis_holds_writes(
    bounded: httpx.AsyncClient, fragile_users: Users, own_redis: RedisServer
) -> None:
    """Recording activity (lastSeenAt) and caching geolocation are writes, and neither is what
    the page is for: while Redis holds writes (a replica promotion, a full disk, CLIENT PAUSE)
    the page still answers, without waiting for the storage timeout."""
    user_id = fragile_users.new_id()
    an_hour_ago = utcnow() - timedelta(hours=1)
    # Last seen an hour ago, so this request records activity; a global IP never looked up.
    created = await fragile_users.session(user_id, ip="81.2.69.160", created_at=an_hour_ago)
    own_redis.cli("CLIENT", "PAUSE", str(int(3 * STORAGE_TIMEOUT * 1000)), "WRITE")
    try:
        started = time.monotonic()
        response = await bounded.get(ROUTE, headers=cookie(created.token))
        elapsed = time.monotonic() - started
    finally:
        own_redis.cli("CLIENT", "UNPAUSE")
    assert response.status_code == 200, response.text
    [session] = response.json()["sessions"]
    assert session["is_current"] is True
    # Located by the provider; caching that answer waits for Redis, the page does not.
    assert session["geo"] is not None and session["geo"]["country_code"] == "GB"
    assert elapsed < STORAGE_TIMEOUT, elapsed

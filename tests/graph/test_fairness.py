"""No user can starve others (graph/fairness.py, and lists resolved once per request).

- Identical list fields of one document are resolved once: 40 aliases of `sessions` make one
  listing in Redis, 40 aliases of `history` (same arguments) one Postgres query.
- A user with USER_MAX_CONCURRENT_REQUESTS requests in flight gets 429 with Retry-After (REST)
  or RATE_LIMITED (GraphQL) for one more; other users are not affected.
- One user's 8 connections looping a 40-alias query for a few seconds, while
  another user's requests all succeed.

The app here (fragile_server) runs on the run's own Postgres and Redis, whose counters these
tests read (and whose sessions table one test locks for a moment).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from graph.context import POSTGRES_READS_PER_REQUEST
from graph.fairness import IN_FLIGHT
from sessions_config.settings import Settings
from store.models import utcnow
from tests.app_client import GRAPHQL_RESPONSE, ROUTE, cookie, fresh_ip, graphql_body, signs_in
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.infra import PostgresServer, RedisServer

ALIASES = 40


def codes(body: dict[str, Any]) -> set[str]:
    return {e.get("extensions", {}).get("code", e["message"]) for e in body.get("errors", ())}


async def make_user(users: Users, *, active: int, past: int = 0) -> tuple[str, str]:
    """A fresh user with active and past sessions: (user id, token of an active one)."""
    user_id = users.new_id()
    now = utcnow()
    for i in range(past):
        created = now - timedelta(days=2, hours=i)
        await users.session(
            user_id, ip=fresh_ip(81), created_at=created, ended_at=created + timedelta(hours=1)
        )
    tokens = [
        (await users.session(user_id, ip=fresh_ip(81), created_at=now - timedelta(minutes=i))).token
        for i in range(active)
    ]
    return user_id, tokens[0]


# -- identical list fields are resolved once -------------------------------------------------------


SESSIONS_ALIASED = (
    "{ me { " + " ".join(f"s{i}: sessions {{ id clientIp }}" for i in range(ALIASES)) + " } }"
)
ME_ALIASED = "{ " + " ".join(f"m{i}: me {{ sessions {{ id }} }}" for i in range(ALIASES)) + " }"


def command_calls(redis: RedisServer) -> dict[str, int]:
    """Calls per Redis command since the server started (INFO commandstats)."""
    stats = redis.cli("INFO", "commandstats")
    return {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", stats)}


@pytest.mark.parametrize(
    "document", [SESSIONS_ALIASED, ME_ALIASED], ids=["sessions-aliases", "me-aliases"]
)
async def test_forty_aliases_of_sessions_make_one_listing_in_redis(
    own_redis: RedisServer, fragile_client: httpx.AsyncClient, fragile_users: Users, document: str
) -> None:
    _, token = await make_user(fragile_users, active=3)
    before = command_calls(own_redis)
    body = await graphql_body(fragile_client, token=token, query=document)
    after = command_calls(own_redis)
    assert "errors" not in body, body

    lists = [
        value["sessions"] if "sessions" in value else value
        for value in (body["data"]["me"] if "me" in body["data"] else body["data"]).values()
    ]
    assert len(lists) == ALIASES and all(len(found) == 3 for found in lists)
    assert all(found == lists[0] for found in lists)

    def calls(command: str) -> int:
        return after.get(command, 0) - before.get(command, 0)

    # One index read, and one HGETALL per session (pipelined), plus the cookie's own.
    assert calls("zrangebyscore") == 1
    assert calls("hgetall") == 3 + 1


async def test_forty_aliases_of_history_make_one_postgres_query(
    own_postgres: PostgresServer, fragile_client: httpx.AsyncClient, fragile_users: Users
) -> None:
    """Counted in the server's own statement log (log_statement = all, on the run's own
    Postgres, for the length of this test)."""
    user_id, token = await make_user(fragile_users, active=1, past=3)
    probe_id, probe_token = await make_user(fragile_users, active=1, past=1)
    log = own_postgres.dir / "postgres.log"
    document = (
        "{ me { "
        + " ".join(
            f"h{i}: history(first: 2) {{ edges {{ node {{ id }} }} }}" for i in range(ALIASES)
        )
        + " } }"
    )
    admin = await asyncpg.connect(own_postgres.dsn("postgres"))
    try:
        await admin.execute("ALTER SYSTEM SET log_statement = 'all'")
        await admin.execute("SELECT pg_reload_conf()")
        # The server's sessions take the new setting as they read their next command: wait
        # until one of the app's statements shows up in the log.
        deadline = time.monotonic() + 10
        while probe_id not in log.read_text("utf-8", "replace"):
            assert time.monotonic() < deadline, "log_statement did not take effect"
            await graphql_body(
                fragile_client, token=probe_token, query="{ me { history { edges { cursor } } } }"
            )
            await asyncio.sleep(0.1)

        start = log.stat().st_size
        body = await graphql_body(fragile_client, token=token, query=document)
        with log.open("rb") as f:
            f.seek(start)
            logged = f.read().decode("utf-8", "replace")
    finally:
        await admin.execute("ALTER SYSTEM RESET log_statement")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()

    assert "errors" not in body, body
    pages = list(body["data"]["me"].values())
    assert len(pages) == ALIASES and all(len(page["edges"]) == 2 for page in pages)
    assert all(page == pages[0] for page in pages)
    # Each statement's parameters are logged with it; only the history query has this user's.
    queries = logged.count(f"'{user_id}'")
    assert queries == 1, f"{queries} history queries"


# -- a per-user limit on requests in flight --------------------------------------------------------


async def test_a_user_over_the_limit_gets_429_and_rate_limited_while_others_go_on(
    own_postgres: PostgresServer,
    fragile_settings: Settings,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
) -> None:
    """The user's requests are held in flight by a locked sessions table (their history waits
    on it): with USER_MAX_CONCURRENT_REQUESTS of them running, the next is refused at once,
    while another user's requests (active sessions, from Redis) all answer."""
    limit = fragile_settings.user_max_concurrent_requests
    hog_id, hog = await make_user(fragile_users, active=2, past=1)
    _, other = await make_user(fragile_users, active=2)
    assert await signs_in(fragile_client, hog)

    held: list[asyncio.Task[httpx.Response]] = []
    locker = await asyncpg.connect(own_postgres.dsn("sessions"))
    try:
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        held = [
            asyncio.create_task(fragile_client.get(ROUTE, headers=cookie(hog)))
            for _ in range(limit)
        ]
        # Wait until all of them are in flight (each holds its slot from authentication on).
        deadline = time.monotonic() + 5
        while IN_FLIGHT.held(hog_id) < limit:
            assert time.monotonic() < deadline, "the held requests never started"
            await asyncio.sleep(0.01)

        refused = await fragile_client.get(ROUTE, headers=cookie(hog))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(fragile_settings.rate_limit_retry_after)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["cache-control"] == "no-store"
        assert_rest_error(refused, 429, "rate_limited")

        limited = await fragile_client.post(
            "/graphql",
            json={"query": "{ me { id sessions { id } } }"},
            headers={**cookie(hog), "accept": GRAPHQL_RESPONSE},
        )
        assert limited.status_code == 200, limited.text
        assert limited.headers["retry-after"] == str(fragile_settings.rate_limit_retry_after)
        body = limited.json()
        assert body["data"] == {"me": None}
        [error] = body["errors"]
        assert error["extensions"] == {
            "code": "RATE_LIMITED",
            "retryAfter": fragile_settings.rate_limit_retry_after,
            "requestId": limited.headers["x-request-id"],
        }

        # Someone else, at the same time, as many at once as the hog: all answered.
        answers = await asyncio.gather(
            *(
                graphql_body(fragile_client, token=other, query="{ me { sessions { id } } }")
                for _ in range(limit)
            )
        )
        assert all("errors" not in a and len(a["data"]["me"]["sessions"]) == 2 for a in answers), (
            answers
        )
        assert IN_FLIGHT.held(hog_id) == limit  # refusals took no slot
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()
        # The held requests finish (200, or 503 if they outwaited the storage timeout).
        results = await asyncio.gather(*held, return_exceptions=True)
    assert all(isinstance(r, httpx.Response) and r.status_code in (200, 503) for r in results)
    for result in results:
        assert isinstance(result, httpx.Response)
        if result.status_code == 503:
            assert_rest_error(result, 503, "unavailable")
        else:
            assert len(result.json()["sessions"]) == 2, result.text
    assert IN_FLIGHT.held(hog_id) == 0  # every slot given back; no entry left behind
    assert await signs_in(fragile_client, hog)


async def test_one_request_holds_at_most_its_share_of_postgres_connections(
    own_postgres: PostgresServer, fragile_client: httpx.AsyncClient, fragile_users: Users
) -> None:
    """40 different history pages in one document are 40 queries; they run a few at a time
    (POSTGRES_READS_PER_REQUEST), so one user cannot take every pooled connection."""
    _, token = await make_user(fragile_users, active=1, past=3)
    document = (
        "{ me { "
        + " ".join(
            f"h{i}: history(first: {i + 1}) {{ edges {{ node {{ id }} }} }}" for i in range(40)
        )
        + " } }"
    )
    locker = await asyncpg.connect(own_postgres.dsn("sessions"))
    # Another connection watches: inside the locker's transaction, pg_stat_activity would not move.
    watcher = await asyncpg.connect(own_postgres.dsn("sessions"))
    waiting = 0
    try:
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        answer = asyncio.create_task(graphql_body(fragile_client, token=token, query=document))
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            waiting = max(
                waiting,
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ),
            )
            await asyncio.sleep(0.05)
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()
        await watcher.close()
    body = await answer
    assert 1 <= waiting <= POSTGRES_READS_PER_REQUEST, waiting
    assert "errors" not in body, body
    assert [len(body["data"]["me"][f"h{i}"]["edges"]) for i in (0, 1, 2, 39)] == [1, 2, 3, 3]


# -- many connections of one user ------------------------------------------------------------------


async def test_eight_connections_looping_forty_aliases_do_not_starve_another_user(
    fragile_client: httpx.AsyncClient, fragile_users: Users
) -> None:
    attacker_id, attacker = await make_user(fragile_users, active=5)
    _, victim = await make_user(fragile_users, active=2, past=3)
    document = (
        "{ me { "
        + " ".join(
            f"s{i}: sessions {{ id clientIp geo {{ countryCode }} }}" for i in range(ALIASES)
        )
        + " } }"
    )
    stop = time.monotonic() + 3
    seen: dict[str, int] = {}

    async def attack() -> None:
        while time.monotonic() < stop:
            response = await fragile_client.post(
                "/graphql", json={"query": document}, headers=cookie(attacker)
            )
            body = response.json()
            key = ",".join(sorted(codes(body))) or "ok"
            seen[key] = seen.get(key, 0) + 1

    async def victimise() -> list[int]:
        statuses = []
        while time.monotonic() < stop:
            response = await fragile_client.get(ROUTE, headers=cookie(victim))
            statuses.append(response.status_code)
            if response.status_code == 200:  # the victim's own page, in full
                assert len(response.json()["sessions"]) == 2, response.text
        return statuses

    *_, statuses = await asyncio.gather(*(attack() for _ in range(8)), victimise())

    assert statuses and all(s == 200 for s in statuses), (statuses, seen)
    # The attacker is answered too: with data, or refused for having too many at once.
    assert set(seen) <= {"ok", "RATE_LIMITED"}, seen
    assert seen.get("ok", 0) > 0, seen
    assert IN_FLIGHT.held(attacker_id) == 0

"""Partial data and clear errors while part of the storage is down: with Postgres down, GraphQL
still shows the active sessions (history and signals null, with UNAVAILABLE) and REST answers 503;
a paused Redis is UNAVAILABLE, never an unexpected error; an outage is logged in one short line.

The app here (fragile_server) runs on the run's own Postgres and Redis, which these tests
kill, restart and pause; each leaves them running. Postgres is killed rather than paused: a
refused connection answers at once, where a paused server holds a request for the storage
timeouts (a bound other tests check).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest

from sessions_config.resources import Resources
from store import admin
from store.models import utcnow
from tests.app_client import GRAPHQL_RESPONSE, ROUTE, cookie, fresh_ip, graphql_body
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.infra import PostgresServer, RedisServer
from tests.packages import is_ours

SESSIONS_AND_HISTORY = "{ me { sessions { id } history { edges { node { id } } } } }"
SIGNALS = "{ me { sessions { id isNewLocation impossibleTravel } } }"


async def user_with_history(users: Users, *, active: int = 2, past: int = 2) -> tuple[str, str]:
    """A fresh user with active and past sessions: (user id, token of an active one)."""
    user_id = users.new_id()
    now = utcnow()
    for i in range(past):
        created = now - timedelta(days=3, hours=i)
        await users.session(
            user_id,
            ip=fresh_ip(81),
            created_at=created,
            ended_at=created + timedelta(hours=1),
            end_reason="logout",
        )
    tokens = [
        (await users.session(user_id, ip=fresh_ip(81), created_at=now - timedelta(minutes=i))).token
        for i in range(active)
    ]
    return user_id, tokens[0]


def our_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if is_ours(r.name)]


def outage_lines(caplog: pytest.LogCaptureFixture, dependency: str) -> list[logging.LogRecord]:
    return [r for r in our_records(caplog) if f"{dependency} unavailable" in r.getMessage()]


@contextmanager
def postgres_down(own_postgres: PostgresServer) -> Iterator[None]:
    own_postgres.kill()
    try:
        yield
    finally:
        own_postgres.start()


async def until_answers(client: httpx.AsyncClient, token: str) -> None:
    """Waits for the app to answer this user in full again (the pool reconnects by itself)."""
    deadline = time.monotonic() + 20
    while True:
        response = await client.get(ROUTE, headers=cookie(token))
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert response.status_code == 200, response.text
    assert [s["is_current"] for s in response.json()["sessions"]].count(True) == 1


async def twice_while_postgres_is_down(
    own_postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    client: httpx.AsyncClient,
    token: str,
    check: Callable[[], Awaitable[None]],
) -> None:
    """Runs `check` twice while Postgres is down, each time with a fresh log capture: the first
    request may meet a pooled connection that just died, the second a refused connection; both
    are outages. Then waits for the app to answer this user in full again."""
    try:
        with postgres_down(own_postgres), caplog.at_level(logging.INFO):
            for _ in range(2):
                caplog.clear()
                await check()
    finally:
        await until_answers(client, token)


# -- Postgres down: the active sessions (Redis) still show -------------------------------------


async def test_postgres_down_graphql_still_shows_active_sessions_with_history_null(
    own_postgres: PostgresServer,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, token = await user_with_history(fragile_users, active=2, past=2)
    up = await graphql_body(fragile_client, token=token, query=SESSIONS_AND_HISTORY)
    assert "errors" not in up, up

    async def check() -> None:
        body = await graphql_body(fragile_client, token=token, query=SESSIONS_AND_HISTORY)
        assert body["data"]["me"]["sessions"] == up["data"]["me"]["sessions"]
        assert body["data"]["me"]["history"] is None
        [error] = body["errors"]
        assert error["path"] == ["me", "history"]
        assert error["extensions"]["code"] == "UNAVAILABLE"
        assert error["message"] != "Unexpected error."
        assert str(own_postgres.port) not in str(body)

        # One line for the operator: which dependency, what, why; no traceback.
        [line] = outage_lines(caplog, "postgres")
        assert line.levelno == logging.WARNING
        message = line.getMessage()
        assert "failed at me.history after " in message  # what, and how long it waited
        assert "refused" in message.split(" s: ", 1)[1]  # and why
        assert not [r for r in our_records(caplog) if r.exc_info]

    await twice_while_postgres_is_down(own_postgres, caplog, fragile_client, token, check)
    assert await graphql_body(fragile_client, token=token, query=SESSIONS_AND_HISTORY) == up


async def test_postgres_down_signals_are_null_with_unavailable_and_sessions_still_show(
    own_postgres: PostgresServer,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The location signals read the user's timeline from Postgres: without it they are null
    with an UNAVAILABLE error each, and the sessions themselves are all there."""
    _, token = await user_with_history(fragile_users, active=3, past=1)
    up = await graphql_body(fragile_client, token=token, query=SIGNALS)
    assert "errors" not in up, up
    assert len(up["data"]["me"]["sessions"]) == 3

    async def check() -> None:
        body = await graphql_body(fragile_client, token=token, query=SIGNALS)
        sessions = body["data"]["me"]["sessions"]
        assert [s["id"] for s in sessions] == [s["id"] for s in up["data"]["me"]["sessions"]]
        assert all(s["isNewLocation"] is None for s in sessions)
        assert all(s["impossibleTravel"] is None for s in sessions)
        assert {e["extensions"]["code"] for e in body["errors"]} == {"UNAVAILABLE"}
        assert sorted(tuple(e["path"]) for e in body["errors"]) == sorted(
            ("me", "sessions", i, field)
            for i in range(3)
            for field in ("isNewLocation", "impossibleTravel")
        )
        # Six errors, one outage: one line.
        [line] = outage_lines(caplog, "postgres")
        assert "me.sessions.isNewLocation" in line.getMessage()
        assert not [r for r in our_records(caplog) if r.exc_info]

    await twice_while_postgres_is_down(own_postgres, caplog, fragile_client, token, check)


async def test_postgres_down_rest_is_503_unavailable(
    own_postgres: PostgresServer,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """REST has no partial answers: the documented 503, logged in one line."""
    _, token = await user_with_history(fragile_users)

    async def check() -> None:
        response = await fragile_client.get(ROUTE, headers=cookie(token))
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert response.headers["cache-control"] == "no-store"
        assert_rest_error(response, 503, "unavailable")
        assert len(outage_lines(caplog, "postgres")) == 1
        assert not [r for r in our_records(caplog) if r.exc_info]

    await twice_while_postgres_is_down(own_postgres, caplog, fragile_client, token, check)


# -- Redis paused: nothing can be authenticated ------------------------------------------------


async def test_redis_paused_is_unavailable_not_unexpected(
    own_redis: RedisServer,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis holds the active sessions: while it hangs, GraphQL answers me: null with
    UNAVAILABLE (after the storage timeout) and REST 503, each logged in one line."""
    _, token = await user_with_history(fragile_users)
    with own_redis.paused(), caplog.at_level(logging.INFO):
        # At once, so the test waits for the storage timeout once.
        answer, response = await asyncio.gather(
            graphql_body(fragile_client, token=token, query=SESSIONS_AND_HISTORY),
            fragile_client.get(ROUTE, headers=cookie(token)),
        )
    assert answer["data"] == {"me": None}
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "UNAVAILABLE"
    assert error["path"] == ["me"]
    assert str(own_redis.port) not in str(answer)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert_rest_error(response, 503, "unavailable")

    lines = sorted(r.getMessage() for r in outage_lines(caplog, "redis"))
    assert len(lines) == 2, lines
    assert lines[0].startswith("redis unavailable: query RestV1Sessions failed at me after ")
    assert lines[1].startswith("redis unavailable: query failed at me after ")
    assert not [r for r in our_records(caplog) if r.exc_info]
    await until_answers(fragile_client, token)


async def test_an_outage_line_stays_short_whatever_the_operation_is_called(
    own_postgres: PostgresServer,
    fragile_client: httpx.AsyncClient,
    fragile_users: Users,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The operation's name is the client's: a 20,000-character one is cut in the log line."""
    _, token = await user_with_history(fragile_users)
    name = "Q" * 20_000
    try:
        with postgres_down(own_postgres), caplog.at_level(logging.WARNING):
            response = await fragile_client.post(
                "/graphql",
                json={"query": f"query {name} {{ me {{ history {{ edges {{ cursor }} }} }} }}"},
                headers={**cookie(token), "accept": GRAPHQL_RESPONSE},
            )
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
            [line] = outage_lines(caplog, "postgres")
            assert len(line.getMessage()) < 500, len(line.getMessage())
    finally:
        await until_answers(fragile_client, token)


async def test_the_admin_api_answers_503_while_storage_is_down(
    own_redis: RedisServer,
    own_postgres: PostgresServer,
    fragile_client: httpx.AsyncClient,
    fragile_resources: Resources,
    fragile_users: Users,
) -> None:
    _, key = await admin.create_key(
        fragile_resources.store.pool, name="outage", scopes=["sessions:read", "sessions:write"]
    )
    user_id, _ = await user_with_history(fragile_users)
    path = f"/admin/v1/users/{user_id}/sessions"
    headers = {"Authorization": f"Bearer {key}"}
    # Redis hangs: the key checks out (Postgres), the sessions cannot be read.
    with own_redis.paused():
        looked, ended = await asyncio.gather(
            fragile_client.get(path, headers=headers),
            fragile_client.delete(path, headers=headers),
        )
    for response in (looked, ended):
        assert_rest_error(response, 503, "unavailable")
    # Postgres down: not even the key can be checked.
    with postgres_down(own_postgres):
        assert_rest_error(await fragile_client.get(path, headers=headers), 503, "unavailable")
    deadline = time.monotonic() + 20
    while (await fragile_client.get(path, headers=headers)).status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)

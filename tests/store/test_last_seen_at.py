"""lastSeenAt: when a session last made a request. The store writes it on a request (GraphQL or
REST) at most once a minute, however many requests run at once; the store's `touch` sets it for
writers (`sessions-api sessions touch`: tests/sessions_ops/test_touch.py); GraphQL shows what is
stored."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta

import httpx

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import TOUCH_INTERVAL, IssuedSession
from tests.app_client import (
    ROUTE,
    by_id,
    cookie,
    error_codes,
    fresh_ip,
    graphql_data,
    post_graphql,
    ts,
)
from tests.conftest import Users
from tests.last_seen import SESSIONS_QUERY, assert_about_now, stored_last_seen


async def set_stored_last_seen(resources: Resources, created: IssuedSession, at: datetime) -> None:
    """Pretends the session was last seen at `at` (as if that much time had passed)."""
    store = resources.store
    await store.redis.hset(
        store.keys.session(created.record.user_id, created.record.token_hash),
        "last_seen_at",
        format_timestamp(at),
    )


async def test_a_new_session_was_last_seen_when_it_was_created(
    client: httpx.AsyncClient, users: Users
) -> None:
    uid = users.new_id()
    other = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=5))
    current = await users.session(uid, ip=fresh_ip())
    sessions = by_id(
        (await graphql_data(client, SESSIONS_QUERY, token=current.token))["me"]["sessions"]
    )
    for created in (other, current):
        item = sessions[created.record.id]
        assert item["lastSeenAt"] == item["createdAt"]
    assert ts(sessions[other.record.id]["createdAt"]) == other.record.created_at


async def test_a_request_moves_last_seen_at_at_most_once_a_minute(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    uid = users.new_id()
    created_at = utcnow() - timedelta(minutes=10)
    session = await users.session(uid, ip=fresh_ip(), created_at=created_at)
    assert await stored_last_seen(resources, session) == format_timestamp(created_at)

    # The first request moves it to now, and shows it.
    first = (await graphql_data(client, SESSIONS_QUERY, token=session.token))["me"]["sessions"][0]
    assert_about_now(first["lastSeenAt"])
    stored = await stored_last_seen(resources, session)
    assert stored == first["lastSeenAt"]

    # A second request right after writes nothing.
    await graphql_data(client, SESSIONS_QUERY, token=session.token)
    assert await stored_last_seen(resources, session) == stored

    # Seen 30 seconds ago: still within the minute, nothing is written.
    half_a_minute_ago = utcnow() - timedelta(seconds=30)
    await set_stored_last_seen(resources, session, half_a_minute_ago)
    shown = (await graphql_data(client, SESSIONS_QUERY, token=session.token))["me"]["sessions"][0]
    assert shown["lastSeenAt"] == format_timestamp(half_a_minute_ago)
    assert await stored_last_seen(resources, session) == format_timestamp(half_a_minute_ago)

    # Seen more than a minute ago: the next request writes again.
    await set_stored_last_seen(resources, session, utcnow() - TOUCH_INTERVAL - timedelta(seconds=5))
    shown = (await graphql_data(client, SESSIONS_QUERY, token=session.token))["me"]["sessions"][0]
    assert_about_now(shown["lastSeenAt"])
    assert await stored_last_seen(resources, session) == shown["lastSeenAt"]


async def test_rest_requests_also_mark_the_session_as_seen(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    session = await users.session(
        users.new_id(), ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10)
    )
    response = await client.get(ROUTE, headers=cookie(session.token))
    assert response.status_code == 200
    assert [s["is_current"] for s in response.json()["sessions"]] == [True]
    assert_about_now(await stored_last_seen(resources, session))


async def test_concurrent_requests_leave_one_stable_value(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    session = await users.session(
        users.new_id(), ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10)
    )
    query = "{ me { sessions { lastSeenAt } } }"
    responses = await asyncio.gather(
        *(post_graphql(client, query, token=session.token) for _ in range(10))
    )
    served = 0
    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        if error_codes(body) == ["RATE_LIMITED"]:  # over USER_MAX_CONCURRENT_REQUESTS at once
            assert body["data"] == {"me": None}
            continue
        assert "errors" not in body, body
        [seen] = body["data"]["me"]["sessions"]
        assert_about_now(seen["lastSeenAt"])
        served += 1
    assert served >= 1
    stored = await stored_last_seen(resources, session)
    assert_about_now(stored)
    await graphql_data(client, SESSIONS_QUERY, token=session.token)
    assert await stored_last_seen(resources, session) == stored


async def test_concurrent_touches_write_once(users: Users, resources: Resources) -> None:
    """Many workers seeing the same stale lastSeenAt at once: exactly one of them writes."""
    session = await users.session(
        users.new_id(), ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10)
    )
    t = utcnow()
    # Each worker would write its own instant, so the one write that happened is visible.
    attempts = [t + timedelta(seconds=i) for i in range(10)]
    written = await asyncio.gather(
        *(
            resources.store.active.touch(
                user_id=session.record.user_id,
                token_hash=session.record.token_hash,
                at=at,
                unless_after=t - TOUCH_INTERVAL,
            )
            for at in attempts
        )
    )
    wrote = [touched.wrote for touched in written]
    assert wrote.count(True) == 1, written
    winner = attempts[wrote.index(True)]
    # The others kept, and tell, the winner's value.
    assert {touched.last_seen_at for touched in written} == {winner}
    assert await stored_last_seen(resources, session) == format_timestamp(winner)


async def test_store_touch_python_api(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    uid = users.new_id()
    touched = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10))
    viewer = await users.session(uid, ip=fresh_ip())

    record = await resources.store.touch(touched.token)
    assert record is not None
    assert record.id == touched.record.id
    assert record.last_seen_at is not None
    assert_about_now(format_timestamp(record.last_seen_at))

    sessions = by_id(
        (await graphql_data(client, SESSIONS_QUERY, token=viewer.token))["me"]["sessions"]
    )
    assert sessions[touched.record.id]["lastSeenAt"] == format_timestamp(record.last_seen_at)

    assert await resources.store.touch(secrets.token_urlsafe(32)) is None

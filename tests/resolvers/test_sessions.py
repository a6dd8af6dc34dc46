"""Session details in GraphQL: the device (from the user agent), lastSeenAt (when the session
last made a request, written at most once a minute), and the location signals isNewLocation and
impossibleTravel (docs/SIGNALS.md), computed with one batched geolocation lookup.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import format_timestamp, utcnow
from store.sessions import TOUCH_INTERVAL, IssuedSession
from tests.conftest import Users
from tests.ipapi_server import IpApiServer, answer_for

GRAPHQL_HEADERS = {
    "content-type": "application/json",
    "accept": "application/graphql-response+json",
}
ROUTE = "/v1/users/me/sessions"

LONDON_IP = "81.2.69.142"
MOUNTAIN_VIEW_IP = "8.8.8.8"
PRIVATE_IP = "10.20.30.40"

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

DEVICE = "device { browser browserVersion os osVersion deviceType isMobile }"
SESSIONS_QUERY = f"""
{{ me {{ sessions {{ id createdAt lastSeenAt isCurrent {DEVICE} }}
        history {{ edges {{ node {{ id {DEVICE} }} }} }} }} }}
"""
SIGNALS_QUERY = """
{ me { sessions { id clientIp isNewLocation impossibleTravel geo { city } } } }
"""


def fresh_ip() -> str:
    return f"45.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"psession={token}"}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> datetime:
    return datetime.now(UTC)


async def graphql(url: str, token: str, query: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as c:
        response = await c.post(
            "/graphql", json={"query": query}, headers={**GRAPHQL_HEADERS, **cookie(token)}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


async def stored_last_seen(resources: Resources, created: IssuedSession) -> str:
    """The last_seen_at field of the session's Redis hash, as stored."""
    store = resources.store
    value = await store.redis.hget(store.keys.session(created.record.token_hash), "last_seen_at")
    assert value is not None
    return value.decode() if isinstance(value, bytes) else str(value)


async def set_stored_last_seen(resources: Resources, created: IssuedSession, at: datetime) -> None:
    """Pretends the session was last seen at `at` (as if that much time had passed)."""
    store = resources.store
    await store.redis.hset(
        store.keys.session(created.record.token_hash), "last_seen_at", format_timestamp(at)
    )


def assert_about_now(text: str) -> None:
    assert abs((ts(text) - now()).total_seconds()) < 10, text


# -- device ---------------------------------------------------------------------------------------


async def test_device_of_active_and_past_sessions(server: str, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    mac = await users.session(uid, ip=fresh_ip(), user_agent=CHROME_MAC)
    phone = await users.session(uid, ip=fresh_ip(), user_agent=IPHONE_SAFARI)
    blank = await users.session(uid, ip=fresh_ip(), user_agent="")
    past_phone = await users.session(
        uid,
        ip=fresh_ip(),
        user_agent=IPHONE_SAFARI,
        created_at=t - timedelta(days=2),
        ended_at=t - timedelta(days=1),
    )
    past_mac = await users.session(
        uid,
        ip=fresh_ip(),
        user_agent=CHROME_MAC,
        created_at=t - timedelta(days=3),
        ended_at=t - timedelta(days=2),
    )

    data = (await graphql(server, mac.token, SESSIONS_QUERY))["me"]
    sessions = by_id(data["sessions"])
    history = by_id([e["node"] for e in data["history"]["edges"]])

    mac_device = {
        "browser": "Chrome",
        "browserVersion": "131.0.0",
        "os": "Mac OS X",
        "osVersion": "10.15.7",
        "deviceType": "desktop",
        "isMobile": False,
    }
    assert sessions[mac.record.id]["device"] == mac_device
    assert history[past_mac.record.id]["device"] == mac_device

    for device in (sessions[phone.record.id]["device"], history[past_phone.record.id]["device"]):
        assert device["deviceType"] == "mobile"
        assert device["isMobile"] is True
        assert device["os"] == "iOS"
        assert device["browser"] == "Mobile Safari"

    assert sessions[blank.record.id]["device"] == {
        "browser": None,
        "browserVersion": None,
        "os": None,
        "osVersion": None,
        "deviceType": "unknown",
        "isMobile": None,
    }


# -- lastSeenAt -----------------------------------------------------------------------------------


async def test_a_new_session_was_last_seen_when_it_was_created(server: str, users: Users) -> None:
    uid = users.new_id()
    other = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=5))
    current = await users.session(uid, ip=fresh_ip())
    sessions = by_id((await graphql(server, current.token, SESSIONS_QUERY))["me"]["sessions"])
    for created in (other, current):
        item = sessions[created.record.id]
        assert item["lastSeenAt"] == item["createdAt"]
    assert ts(sessions[other.record.id]["createdAt"]) == other.record.created_at


async def test_a_request_moves_last_seen_at_at_most_once_a_minute(
    server: str, users: Users, resources: Resources
) -> None:
    uid = users.new_id()
    created_at = utcnow() - timedelta(minutes=10)
    session = await users.session(uid, ip=fresh_ip(), created_at=created_at)
    assert await stored_last_seen(resources, session) == format_timestamp(created_at)

    # The first request moves it to now, and shows it.
    first = (await graphql(server, session.token, SESSIONS_QUERY))["me"]["sessions"][0]
    assert_about_now(first["lastSeenAt"])
    stored = await stored_last_seen(resources, session)
    assert stored == first["lastSeenAt"]

    # A second request right after writes nothing.
    await graphql(server, session.token, SESSIONS_QUERY)
    assert await stored_last_seen(resources, session) == stored

    # Seen 30 seconds ago: still within the minute, nothing is written.
    half_a_minute_ago = utcnow() - timedelta(seconds=30)
    await set_stored_last_seen(resources, session, half_a_minute_ago)
    shown = (await graphql(server, session.token, SESSIONS_QUERY))["me"]["sessions"][0]
    assert shown["lastSeenAt"] == format_timestamp(half_a_minute_ago)
    assert await stored_last_seen(resources, session) == format_timestamp(half_a_minute_ago)

    # Seen more than a minute ago: the next request writes again.
    await set_stored_last_seen(resources, session, utcnow() - TOUCH_INTERVAL - timedelta(seconds=5))
    shown = (await graphql(server, session.token, SESSIONS_QUERY))["me"]["sessions"][0]
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
    assert_about_now(await stored_last_seen(resources, session))


async def test_concurrent_requests_leave_one_stable_value(
    server: str, users: Users, resources: Resources
) -> None:
    session = await users.session(
        users.new_id(), ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10)
    )
    async with httpx.AsyncClient(base_url=server, timeout=20) as c:
        responses = await asyncio.gather(
            *(
                c.post(
                    "/graphql",
                    json={"query": "{ me { sessions { lastSeenAt } } }"},
                    headers={**GRAPHQL_HEADERS, **cookie(session.token)},
                )
                for _ in range(10)
            )
        )
    assert all(r.status_code == 200 for r in responses)
    stored = await stored_last_seen(resources, session)
    assert_about_now(stored)
    await graphql(server, session.token, SESSIONS_QUERY)
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
                token_hash=session.record.token_hash, at=at, unless_after=t - TOUCH_INTERVAL
            )
            for at in attempts
        )
    )
    assert written.count(True) == 1, written
    winner = attempts[written.index(True)]
    assert await stored_last_seen(resources, session) == format_timestamp(winner)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("sessions-api")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessions_ops.cli"]


async def run_touch(settings: Settings, token: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        REDIS_KEY_PREFIX=settings.redis_key_prefix,
    )
    proc = await asyncio.create_subprocess_exec(
        *_command(),
        "sessions",
        "touch",
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)  # no hang
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_touch_sets_last_seen_at(
    server: str, users: Users, resources: Resources, base_settings: Settings
) -> None:
    uid = users.new_id()
    touched = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10))
    viewer = await users.session(uid, ip=fresh_ip())

    code, out, err = await run_touch(base_settings, touched.token)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["token_suffix"] == touched.record.token_suffix
    assert_about_now(printed["last_seen_at"])
    assert touched.token not in out

    sessions = by_id((await graphql(server, viewer.token, SESSIONS_QUERY))["me"]["sessions"])
    assert sessions[touched.record.id]["lastSeenAt"] == printed["last_seen_at"]
    assert await stored_last_seen(resources, touched) == printed["last_seen_at"]


async def test_cli_touch_of_an_unknown_or_ended_token_fails(
    users: Users, resources: Resources, base_settings: Settings
) -> None:
    # Any string, including one that looks like an option, is only an unknown token.
    code, out, err = await run_touch(base_settings, "-" + secrets.token_urlsafe(32))
    assert code == 1, err
    assert out == ""
    assert "Traceback" not in err

    ended = await users.session(users.new_id(), ip=fresh_ip())
    await resources.store.end(ended.token)
    code, out, _ = await run_touch(base_settings, ended.token)
    assert code == 1
    assert out == ""
    # Touching never brings an ended session back.
    assert await resources.store.authenticate(ended.token) is None


async def test_store_touch_python_api(server: str, users: Users, resources: Resources) -> None:
    uid = users.new_id()
    touched = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10))
    viewer = await users.session(uid, ip=fresh_ip())

    record = await resources.store.touch(touched.token)
    assert record is not None
    assert record.id == touched.record.id
    assert record.last_seen_at is not None
    assert_about_now(format_timestamp(record.last_seen_at))

    sessions = by_id((await graphql(server, viewer.token, SESSIONS_QUERY))["me"]["sessions"])
    assert sessions[touched.record.id]["lastSeenAt"] == format_timestamp(record.last_seen_at)

    assert await resources.store.touch(secrets.token_urlsafe(32)) is None


async def test_rest_shape_has_no_new_keys(client: httpx.AsyncClient, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    current = await users.session(uid, ip=fresh_ip(), user_agent=CHROME_MAC)
    await users.session(
        uid, ip=fresh_ip(), created_at=t - timedelta(days=2), ended_at=t - timedelta(days=1)
    )
    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"sessions", "history"}
    (session,) = body["sessions"]
    assert set(session) == {
        "token_suffix",
        "created_at",
        "expires_at",
        "client_ip",
        "user_agent",
        "geo",
        "is_current",
    }
    (past,) = body["history"]
    assert set(past) == {"token_suffix", "created_at", "client_ip", "user_agent", "geo"}


# -- location signals (ip-api provider: cities and coordinates) -----------------------------------


async def test_is_new_location(ipapi_app: str, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    await users.session(
        uid, ip=LONDON_IP, created_at=t - timedelta(days=10), ended_at=t - timedelta(days=9)
    )
    london = await users.session(uid, ip=LONDON_IP, created_at=t - timedelta(days=3))
    mountain_view = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=2))
    unknown = await users.session(uid, ip=PRIVATE_IP, created_at=t - timedelta(days=1))

    sessions = by_id((await graphql(ipapi_app, unknown.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[london.record.id]["geo"] == {"city": "London"}
    assert sessions[london.record.id]["isNewLocation"] is False
    assert sessions[mountain_view.record.id]["geo"] == {"city": "Mountain View"}
    assert sessions[mountain_view.record.id]["isNewLocation"] is True
    assert sessions[unknown.record.id]["geo"] is None
    assert sessions[unknown.record.id]["isNewLocation"] is False
    # Days apart: nothing impossible about these trips.
    assert not any(s["impossibleTravel"] for s in sessions.values())


def fresh_ip_in(city: str) -> str:
    """A fresh address that the fake ip-api server places in `city` (its answers are stable)."""
    while True:
        ip = fresh_ip()
        if answer_for(ip)["city"] == city:
            return ip


async def test_a_past_session_from_another_address_in_the_same_city_is_the_same_place(
    ipapi_app: str, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    await users.session(
        uid,
        ip=fresh_ip_in("Tokyo"),
        created_at=t - timedelta(days=5),
        ended_at=t - timedelta(days=4),
    )
    tokyo = await users.session(uid, ip=fresh_ip_in("Tokyo"), created_at=t - timedelta(days=2))
    austin = await users.session(uid, ip=fresh_ip_in("Austin"), created_at=t - timedelta(days=1))
    sessions = by_id((await graphql(ipapi_app, tokyo.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[tokyo.record.id]["geo"] == {"city": "Tokyo"}
    assert sessions[tokyo.record.id]["isNewLocation"] is False
    assert sessions[austin.record.id]["geo"] == {"city": "Austin"}
    assert sessions[austin.record.id]["isNewLocation"] is True


async def test_the_first_located_session_of_a_user_is_new(ipapi_app: str, users: Users) -> None:
    session = await users.session(users.new_id(), ip=LONDON_IP)
    (item,) = (await graphql(ipapi_app, session.token, SIGNALS_QUERY))["me"]["sessions"]
    assert item["isNewLocation"] is True
    assert item["impossibleTravel"] is False


async def test_a_later_session_in_the_same_place_does_not_make_an_earlier_one_known(
    ipapi_app: str, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    first = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=2))
    second = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=1))
    sessions = by_id((await graphql(ipapi_app, second.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[first.record.id]["isNewLocation"] is True
    assert sessions[second.record.id]["isNewLocation"] is False


@pytest.mark.parametrize(
    ("gap", "impossible"),
    [(timedelta(hours=1), True), (timedelta(days=2), False)],
    ids=["one hour", "two days"],
)
async def test_impossible_travel_london_to_mountain_view(
    ipapi_app: str, users: Users, gap: timedelta, impossible: bool
) -> None:
    uid = users.new_id()
    t = utcnow()
    arrived = t - timedelta(minutes=5)
    # The previous session is a past one: signals look at every session of the user.
    london = await users.session(
        uid, ip=LONDON_IP, created_at=arrived - gap, ended_at=arrived - gap + timedelta(minutes=1)
    )
    mountain_view = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=arrived)
    viewer = await users.session(uid, ip=PRIVATE_IP)

    sessions = by_id((await graphql(ipapi_app, viewer.token, SIGNALS_QUERY))["me"]["sessions"])
    assert london.record.id not in sessions
    assert sessions[mountain_view.record.id]["impossibleTravel"] is impossible
    assert sessions[mountain_view.record.id]["isNewLocation"] is True
    # The viewer's place is unknown: nothing to compare.
    assert sessions[viewer.record.id]["impossibleTravel"] is False


async def test_signals_need_one_batched_lookup_for_all_sessions(
    ipapi_app: str, ipapi: IpApiServer, users: Users
) -> None:
    """On a cold cache, the IPs of the active sessions and of the whole timeline (past sessions
    included) are looked up in one provider request: no lookup per session."""
    uid = users.new_id()
    t = utcnow()
    active_ips = [fresh_ip() for _ in range(5)]
    past_ips = [fresh_ip() for _ in range(6)]
    created: list[IssuedSession] = []
    for n, ip in enumerate(active_ips):
        created.append(await users.session(uid, ip=ip, created_at=t - timedelta(hours=n)))
    for n, ip in enumerate(past_ips):
        await users.session(
            uid,
            ip=ip,
            created_at=t - timedelta(days=n + 1),
            ended_at=t - timedelta(days=n + 1) + timedelta(hours=1),
        )

    ipapi.reset()
    query = "{ me { sessions { id isNewLocation impossibleTravel } } }"
    sessions = (await graphql(ipapi_app, created[0].token, query))["me"]["sessions"]
    assert len(sessions) == len(active_ips)
    assert len(ipapi.requests) == 1, [r.queries for r in ipapi.requests]
    assert sorted(ipapi.requests[0].queries) == sorted(active_ips + past_ips)

    # Asked again, with geo and history too: the cache answers, the provider hears nothing.
    ipapi.reset()
    await graphql(
        ipapi_app,
        created[0].token,
        "{ me { sessions { isNewLocation geo { city } }"
        " history { edges { node { geo { city } } } } } }",
    )
    assert ipapi.requests == []


async def test_signals_geo_and_history_share_one_lookup(
    ipapi_app: str, ipapi: IpApiServer, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    ips = [fresh_ip() for _ in range(6)]
    current = await users.session(uid, ip=ips[0])
    await users.session(uid, ip=ips[1], created_at=t - timedelta(hours=1))
    for n, ip in enumerate(ips[2:]):
        await users.session(
            uid,
            ip=ip,
            created_at=t - timedelta(days=n + 1),
            ended_at=t - timedelta(days=n + 1) + timedelta(hours=1),
        )
    ipapi.reset()
    data = await graphql(
        ipapi_app,
        current.token,
        "{ me { sessions { isNewLocation impossibleTravel geo { city } }"
        " history { edges { node { geo { city } } } } } }",
    )
    assert len(data["me"]["history"]["edges"]) == 4
    assert all(s["geo"] is not None for s in data["me"]["sessions"])
    assert len(ipapi.requests) == 1, [r.queries for r in ipapi.requests]
    assert sorted(ipapi.requests[0].queries) == sorted(ips)

"""The v1 REST route GET /v1/users/me/sessions: the published contract, ordering, the 401 paths,
Cache-Control: no-store, and damaged Redis data."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import IssuedSession, NewSession
from tests.app_client import JSON, ROUTE, cookie, fresh_ip, media_type, signs_in
from tests.conftest import Users
from tests.http_errors import assert_rest_error

pytestmark = pytest.mark.redis_topologies

EXAMPLE = json.loads(
    (Path(__file__).parent.parent / "contract" / "sessions-v1-example.json").read_text("utf-8")
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def hours_ago(n: float) -> datetime:
    return utcnow() - timedelta(hours=n)


def assert_same_shape(
    example: Any, ours: Any, path: str = "$", *, unknown_geo_ok: bool = False, in_geo: bool = False
) -> None:
    """Same keys at every level and the same JSON value types (bool is not a number) as the
    example. With unknown_geo_ok, a geo object or any of its values may also be null."""
    if in_geo and unknown_geo_ok and ours is None:
        return
    if isinstance(example, dict):
        assert isinstance(ours, dict), f"{path}: expected an object, got {ours!r}"
        assert set(ours) == set(example), (
            f"{path}: keys {sorted(ours)} differ from the contract's {sorted(example)}"
        )
        for key, value in example.items():
            assert_same_shape(
                value,
                ours[key],
                f"{path}.{key}",
                unknown_geo_ok=unknown_geo_ok,
                in_geo=in_geo or key == "geo",
            )
    elif isinstance(example, list):
        assert isinstance(ours, list), f"{path}: expected an array, got {ours!r}"
        for i, item in enumerate(ours):
            assert_same_shape(
                example[0], item, f"{path}[{i}]", unknown_geo_ok=unknown_geo_ok, in_geo=in_geo
            )
    else:
        assert type(ours) is type(example), (
            f"{path}: {ours!r} is a {type(ours).__name__}, the contract has a "
            f"{type(example).__name__} ({example!r})"
        )


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store"


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert_no_store(response)
    assert_rest_error(response, 401, "unauthenticated")


async def make_user_with_history(
    users: Users,
) -> tuple[str, IssuedSession, IssuedSession, list[IssuedSession]]:
    """A user with two active sessions (the newer one will be current) and two ended ones."""
    uid = users.new_id()
    older = await users.session(
        uid, ip=fresh_ip(), user_agent="active-older", created_at=hours_ago(5)
    )
    current = await users.session(
        uid, ip=fresh_ip(), user_agent="active-current", created_at=hours_ago(1)
    )
    past = [
        await users.session(
            uid,
            ip=fresh_ip(),
            user_agent=f"past-{n}",
            created_at=hours_ago(48 + n),
            expires_at=hours_ago(24 + n),
            ended_at=hours_ago(47 + n),
            end_reason="logout",
        )
        for n in range(2)
    ]
    return uid, current, older, past


def by_agent(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["user_agent"]: item for item in items}


# -- the contract -------------------------------------------------------------------------------


async def test_contract_with_full_geo(ipapi_app: str, users: Users) -> None:
    """Through the ip-api app (every geo field known), our answer has exactly the example's keys
    at every level and the same JSON value types."""
    _, current, older, past = await make_user_with_history(users)
    async with httpx.AsyncClient(base_url=ipapi_app, timeout=20) as http:
        response = await http.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert_same_shape(EXAMPLE, body)
    # Compact JSON, keys in the contract's order, floats and text as Python's json writes them.
    compact = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert response.content == compact
    assert [(s["token_suffix"], s["client_ip"], s["is_current"]) for s in body["sessions"]] == [
        (current.token[-6:], current.record.client_ip, True),
        (older.token[-6:], older.record.client_ip, False),
    ]
    assert [(h["token_suffix"], h["created_at"]) for h in body["history"]] == [
        (p.token[-6:], format_timestamp(p.record.created_at)) for p in past
    ]
    for item in body["sessions"] + body["history"]:
        assert item["geo"] is not None and None not in item["geo"].values(), item
        assert isinstance(item["geo"]["lat"], float) and isinstance(item["geo"]["lon"], float)


async def test_contract_with_offline_geo(client: httpx.AsyncClient, users: Users) -> None:
    """Through the offline provider the key sets are the same; geo values are of the example's
    type or null (unknown), and a private address has geo null."""
    uid = users.new_id()
    current = await users.session(uid, ip="8.8.8.8", created_at=hours_ago(1))
    await users.session(uid, ip="192.168.1.20", user_agent="lan", created_at=hours_ago(2))
    await users.session(
        uid, ip="2001:4860:4860::8888", created_at=hours_ago(30), ended_at=hours_ago(29)
    )
    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["sessions"]) == 2 and len(body["history"]) == 1
    assert_same_shape(EXAMPLE, body, unknown_geo_ok=True)
    sessions = by_agent(body["sessions"])
    assert sessions["lan"]["geo"] is None
    google = sessions["pytest"]["geo"]
    assert google is not None and google["country_code"] == "US"
    assert set(google) == set(EXAMPLE["sessions"][0]["geo"])
    assert body["history"][0]["geo"] is not None
    assert set(body["history"][0]["geo"]) == set(EXAMPLE["history"][0]["geo"])


async def test_timestamps_are_utc_seconds_and_equal_what_was_stored(
    client: httpx.AsyncClient, users: Users
) -> None:
    uid = users.new_id()
    created = datetime(2026, 1, 15, 9, 30, 5, 123456, tzinfo=UTC)
    expires = utcnow() + timedelta(days=3, microseconds=654321)
    current = await users.session(uid, ip=fresh_ip(), created_at=created, expires_at=expires)
    # A non-UTC zone is stored (and shown) as the same instant in UTC.
    past_created = datetime(2025, 12, 1, 12, 0, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    past = await users.session(
        uid,
        ip=fresh_ip(),
        created_at=past_created,
        expires_at=past_created + timedelta(days=30),
        ended_at=past_created + timedelta(hours=2),
    )
    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
    body = response.json()
    session = body["sessions"][0]
    item = body["history"][0]
    for value in (session["created_at"], session["expires_at"], item["created_at"]):
        assert TIMESTAMP.match(value), value
    assert session["created_at"] == "2026-01-15T09:30:05Z"
    assert session["created_at"] == format_timestamp(current.record.created_at)
    assert session["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert session["expires_at"] == format_timestamp(current.record.expires_at)
    assert item["created_at"] == "2025-12-01T12:00:00Z"
    assert item["created_at"] == format_timestamp(past.record.created_at)
    assert session["token_suffix"] == current.token[-6:]
    assert item["token_suffix"] == past.token[-6:]


# -- what the page lists ------------------------------------------------------------------------


async def test_sessions_newest_first_and_only_the_requesting_one_is_current(
    client: httpx.AsyncClient, users: Users
) -> None:
    uid = users.new_id()
    made = [
        await users.session(uid, ip=fresh_ip(), user_agent=f"s{n}", created_at=hours_ago(n + 1))
        for n in (3, 0, 2, 1)
    ]
    for requester in made:
        response = await client.get(ROUTE, headers=cookie(requester.token))
        assert response.status_code == 200, response.text
        assert_no_store(response)
        sessions = response.json()["sessions"]
        assert [s["user_agent"] for s in sessions] == ["s0", "s1", "s2", "s3"]
        current = [s for s in sessions if s["is_current"] is True]
        assert [s["token_suffix"] for s in current] == [requester.token[-6:]]
        assert all(s["is_current"] is False for s in sessions if s is not current[0])


async def test_history_is_the_newest_50_past_sessions_without_active_ones(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    uid = users.new_id()
    base = utcnow() - timedelta(days=10)
    await resources.store.create_many(
        [
            NewSession(
                user_id=uid,
                ip=fresh_ip(11),
                user_agent=f"past-{n:02d}",
                created_at=base - timedelta(minutes=n),
                expires_at=base + timedelta(days=1),
                ended_at=base - timedelta(minutes=n) + timedelta(seconds=30),
                end_reason="revoked" if n % 2 else "logout",
            )
            for n in range(55)
        ]
    )
    current = await users.session(uid, ip=fresh_ip(11), user_agent="active-1")
    await users.session(uid, ip=fresh_ip(11), user_agent="active-2", created_at=base)
    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
    body = response.json()
    history = body["history"]
    assert [h["user_agent"] for h in history] == [f"past-{n:02d}" for n in range(50)]
    created = [h["created_at"] for h in history]
    assert created == sorted(created, reverse=True) and len(set(created)) == 50
    assert {s["user_agent"] for s in body["sessions"]} == {"active-1", "active-2"}


async def test_ended_and_expired_sessions_move_to_history(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    uid = users.new_id()
    current = await users.session(uid, ip=fresh_ip(), user_agent="current")
    ended = await users.session(uid, ip=fresh_ip(), user_agent="ended", created_at=hours_ago(2))
    await users.session(
        uid,
        ip=fresh_ip(),
        user_agent="born-expired",
        created_at=hours_ago(3),
        expires_at=hours_ago(1),
    )
    before = (await client.get(ROUTE, headers=cookie(current.token))).json()
    assert {s["user_agent"] for s in before["sessions"]} == {"current", "ended"}
    assert [h["user_agent"] for h in before["history"]] == ["born-expired"]

    await resources.store.end(ended.token)
    after = (await client.get(ROUTE, headers=cookie(current.token))).json()
    assert [s["user_agent"] for s in after["sessions"]] == ["current"]
    assert [h["user_agent"] for h in after["history"]] == ["ended", "born-expired"]


# -- 401 and no-store ---------------------------------------------------------------------------


async def test_no_cookie_is_401(client: httpx.AsyncClient) -> None:
    assert_unauthenticated(await client.get(ROUTE))


async def test_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(secrets.token_urlsafe(32))))


async def test_other_cookies_only_is_401(client: httpx.AsyncClient, users: Users) -> None:
    created = await users.session(users.new_id(), ip=fresh_ip())
    headers = {"cookie": f"session={created.token}; other=1"}
    assert_unauthenticated(await client.get(ROUTE, headers=headers))


@pytest.mark.parametrize(
    "value",
    [
        "",
        '""',
        "abc$%^&*()!",
        "../../etc/passwd",
        "a b c d e f g h i j k l m",
        "'; DROP TABLE sessions; --",
        "\\x00\\xff" * 4,
        "A" * 10 * 1024,
        "A" * 15,
        "+/=" * 10,
    ],
    ids=[
        "empty",
        "quoted-empty",
        "punctuation",
        "path",
        "spaces",
        "sql",
        "escapes",
        "10KB",
        "too-short",
        "base64-not-urlsafe",
    ],
)
async def test_malformed_cookie_is_401(client: httpx.AsyncClient, value: str) -> None:
    assert_unauthenticated(await client.get(ROUTE, headers={"cookie": f"psession={value}"}))


async def test_non_ascii_cookie_bytes_are_401(client: httpx.AsyncClient) -> None:
    headers = {"cookie": "psession=tök€n-ünïcode-value".encode()}
    assert_unauthenticated(await client.get(ROUTE, headers=headers))


async def test_ended_session_is_401(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    created = await users.session(users.new_id(), ip=fresh_ip())
    assert await signs_in(client, created.token)
    await resources.store.end(created.token)
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(created.token)))


async def test_revoked_session_is_401(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    created = await users.session(users.new_id(), ip=fresh_ip())
    await resources.store.end(created.token, reason="revoked")
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(created.token)))


async def test_session_created_already_expired_is_401_and_in_history(
    client: httpx.AsyncClient, users: Users
) -> None:
    uid = users.new_id()
    expired = await users.session(
        uid, ip=fresh_ip(), user_agent="expired", created_at=hours_ago(2), expires_at=hours_ago(1)
    )
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(expired.token)))
    other = await users.session(uid, ip=fresh_ip())
    body = (await client.get(ROUTE, headers=cookie(other.token))).json()
    assert [h["user_agent"] for h in body["history"]] == ["expired"]


async def test_session_that_expires_while_in_use_becomes_401(
    client: httpx.AsyncClient, users: Users
) -> None:
    uid = users.new_id()
    short = await users.session(
        uid, ip=fresh_ip(), user_agent="short", expires_at=utcnow() + timedelta(seconds=4)
    )
    response = await client.get(ROUTE, headers=cookie(short.token))
    assert time.time() < short.record.expires_at.timestamp(), "too slow to test: it expired first"
    assert response.status_code == 200, response.text
    assert [s["user_agent"] for s in response.json()["sessions"]] == ["short"]

    # Bounded wait: until the wall clock is past expires_at (at most about 5 s).
    await asyncio.sleep(max(0.0, short.record.expires_at.timestamp() + 0.3 - time.time()))
    assert time.time() > short.record.expires_at.timestamp()
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(short.token)))

    other = await users.session(uid, ip=fresh_ip())
    body = (await client.get(ROUTE, headers=cookie(other.token))).json()
    assert [s["user_agent"] for s in body["sessions"]] == ["pytest"]
    assert [h["user_agent"] for h in body["history"]] == ["short"]


async def test_token_hash_as_cookie_is_401(client: httpx.AsyncClient, users: Users) -> None:
    """What is stored (the SHA-256) is not a credential."""
    created = await users.session(users.new_id(), ip=fresh_ip())
    assert_unauthenticated(await client.get(ROUTE, headers=cookie(created.record.token_hash)))


async def test_200_is_no_store(client: httpx.AsyncClient, users: Users) -> None:
    created = await users.session(users.new_id(), ip=fresh_ip())
    response = await client.get(ROUTE, headers=cookie(created.token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_no_store(response)


# -- damaged data in Redis ----------------------------------------------------------------------


async def test_redis_down_rest_route_is_json_503(down_client: httpx.AsyncClient) -> None:
    token = secrets.token_urlsafe(32)
    response = await down_client.get(ROUTE, headers=cookie(token))
    assert response.status_code == 503
    assert media_type(response) == JSON
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["cache-control"] == "no-store"
    assert_rest_error(response, 503, "unavailable")


async def test_damaged_session_hashes_do_not_break_the_page(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """A hash with an unparseable created_at is skipped; one whose client_ip is not an IP is
    shown with geo null; an index entry without a hash is ignored."""
    uid = users.new_id()
    current = await users.session(uid, ip="8.8.8.8", user_agent="good")
    redis = resources.store.redis
    keys = resources.store.keys
    expires = utcnow() + timedelta(hours=1)
    score = int(expires.timestamp())

    def fields(**overrides: str) -> dict[str, str]:
        return {
            "id": "00000000-0000-4000-8000-" + secrets.token_hex(6),
            "user_id": uid,
            "token_suffix": "dmg123",
            "created_at": format_timestamp(hours_ago(1)),
            "expires_at": format_timestamp(expires),
            "client_ip": fresh_ip(),
            "user_agent": "damaged",
        } | overrides

    damaged = {
        hashlib.sha256(secrets.token_bytes(16)).hexdigest(): fields(
            created_at="yesterday-ish", user_agent="bad-time"
        ),
        hashlib.sha256(secrets.token_bytes(16)).hexdigest(): fields(
            client_ip="not-an-ip", user_agent="bad-ip"
        ),
        hashlib.sha256(secrets.token_bytes(16)).hexdigest(): fields(
            client_ip="999.1.2.3", user_agent="bad-ip-2"
        ),
    }
    dangling = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    for token_hash, mapping in damaged.items():
        await redis.hset(keys.session(uid, token_hash), mapping=mapping)  # type: ignore[misc]
        await redis.expireat(keys.session(uid, token_hash), score)
    await redis.zadd(keys.user_sessions(uid), {h: score for h in [*damaged, dangling]})

    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    sessions = by_agent(body["sessions"])
    assert set(sessions) == {"good", "bad-ip", "bad-ip-2"}
    assert sessions["bad-ip"]["geo"] is None and sessions["bad-ip"]["client_ip"] == "not-an-ip"
    assert sessions["bad-ip-2"]["geo"] is None
    assert sessions["good"]["geo"] is not None and sessions["good"]["is_current"] is True
    assert_same_shape(EXAMPLE, body, unknown_geo_ok=True)


# -- errors ---------------------------------------------------------------------------------------


async def test_rest_errors_from_any_depth_reach_the_client_in_the_rest_shape(
    client: httpx.AsyncClient, users: Users
) -> None:
    """An error raised by the route's own check (`limit`), from a GraphQL error deep inside the
    document's execution (401, 404, 409), or by the router (405, unknown path): each answers
    `{"error": {"code", "message"}}` as JSON with no-store."""
    me = await users.session(users.new_id(), ip=fresh_ip())
    headers = cookie(me.token)
    answers = [
        (await client.get(ROUTE, params={"limit": "abc"}, headers=headers), 400, "bad_request"),
        (await client.get(ROUTE, params={"limit": "201"}, headers=headers), 400, "bad_request"),
        (await client.get(ROUTE), 401, "unauthenticated"),
        (await client.delete(f"{ROUTE}/{uuid.uuid4()}", headers=headers), 404, "not_found"),
        (await client.delete(f"{ROUTE}/{me.record.id}", headers=headers), 409, "current_session"),
        (await client.put(ROUTE, headers=headers), 405, "method_not_allowed"),
        (await client.get(f"{ROUTE}/", headers=headers), 404, "not_found"),
    ]
    for response, status, code in answers:
        assert_rest_error(response, status, code)
    # The v1 bytes, to the letter: the limits are those of GraphQL's `history(first:)`.
    assert answers[0][0].content == (
        b'{"error":{"code":"bad_request","message":"limit must be a whole number from 0 to 200."}}'
    )

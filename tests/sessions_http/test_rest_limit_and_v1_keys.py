"""The REST route GET /v1/users/me/sessions: its `?limit=` on history (default 50, 0..200,
anything else 400), and its v1 keys, kept exactly as the contract has them whatever GraphQL has
gained since (device, lastSeenAt, endReason, signals, ids)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import utcnow
from store.sessions import IssuedSession, NewSession
from tests.app_client import JSON, ROUTE, cookie, fresh_ip
from tests.conftest import Users
from tests.http_errors import assert_rest_error

EXAMPLE = json.loads(
    (Path(__file__).parent.parent / "contract" / "sessions-v1-example.json").read_text("utf-8")
)
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


# -- ?limit= ---------------------------------------------------------------------------------------


async def user_with_past(
    resources: Resources, users: Users, n: int
) -> tuple[IssuedSession, list[str]]:
    """A fresh user with one active session and n past ones; returns the active session and the
    past sessions' token suffixes, newest first."""
    uid = users.new_id()
    now = utcnow()
    past = await resources.store.create_many(
        [
            NewSession(
                user_id=uid,
                ip=fresh_ip(),
                user_agent=f"past {i}",
                created_at=now - timedelta(hours=i + 2),
                ended_at=now - timedelta(hours=i + 1),
            )
            for i in range(n)
        ]
    )
    current = await users.session(uid, ip=fresh_ip())
    return current, [p.record.token_suffix for p in past]


async def rest_history(client: httpx.AsyncClient, token: str, query: str = "") -> list[str]:
    response = await client.get(f"{ROUTE}{query}", headers=cookie(token))
    assert response.status_code == 200, response.text
    assert response.headers.get("cache-control") == "no-store"
    return [h["token_suffix"] for h in response.json()["history"]]


async def test_limit_default_and_bounds(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """With 60 past sessions: no limit gives the 50 newest, limit=10 the 10 newest, limit=0 none,
    limit=200 all 60, limit=50 the same as no limit."""
    current, newest_first = await user_with_past(resources, users, 60)
    assert await rest_history(client, current.token) == newest_first[:50]
    assert await rest_history(client, current.token, "?limit=10") == newest_first[:10]
    assert await rest_history(client, current.token, "?limit=0") == []
    assert await rest_history(client, current.token, "?limit=200") == newest_first
    assert await rest_history(client, current.token, "?limit=50") == newest_first[:50]
    assert await rest_history(client, current.token, "?limit=60") == newest_first


@pytest.mark.parametrize(
    "value",
    [
        "201",
        "-1",
        "abc",
        "1.5",
        "",
        "1e1",
        "+5",
        " 5",
        "0x10",
        "10abc",
        "9" * 40,
        "9" * 5000,
        "²",
        "%C2%B2",
        "١٢",
    ],
)
async def test_invalid_limit_is_400_json(
    client: httpx.AsyncClient, users: Users, value: str
) -> None:
    current = await users.session(users.new_id(), ip=fresh_ip())
    response = await client.get(f"{ROUTE}?limit={value}", headers=cookie(current.token))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(JSON)
    assert response.headers.get("cache-control") == "no-store"
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert isinstance(error["message"], str) and error["message"]
    assert_rest_error(response, 400, "bad_request")


# -- v1 keys ---------------------------------------------------------------------------------------


async def test_rest_shape_keeps_exactly_the_contract_keys(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """What GraphQL has beyond v1 (device, lastSeenAt, endReason, signals, ids) stays out of REST:
    every session, history item and geo object has exactly the example's keys, with or without
    limit."""
    uid = users.new_id()
    current = await users.session(uid, ip="8.8.8.8")
    other = await users.session(uid, ip="81.2.69.142")
    await users.session(uid, ip="1.1.1.1")
    await client.delete(f"{ROUTE}/{other.record.id}", headers=cookie(current.token))
    await users.session(
        uid,
        ip="8.8.4.4",
        created_at=utcnow() - timedelta(hours=3),
        expires_at=utcnow() - timedelta(hours=1),
    )
    for query in ("", "?limit=5"):
        response = await client.get(f"{ROUTE}{query}", headers=cookie(current.token))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == set(EXAMPLE)
        assert len(body["sessions"]) == 2 and len(body["history"]) == 2
        for kind in ("sessions", "history"):
            for item in body[kind]:
                assert set(item) == set(EXAMPLE[kind][0]), item
                assert item["geo"] is not None, item
                assert set(item["geo"]) == set(EXAMPLE[kind][0]["geo"]), item["geo"]


async def test_rest_shape_has_no_keys_beyond_v1(client: httpx.AsyncClient, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    current = await users.session(uid, ip=fresh_ip(), user_agent=CHROME_MAC)
    await users.session(
        uid, ip=fresh_ip(), created_at=t - timedelta(days=2), ended_at=t - timedelta(days=1)
    )
    response = await client.get(ROUTE, headers=cookie(current.token))
    assert response.status_code == 200, response.text
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

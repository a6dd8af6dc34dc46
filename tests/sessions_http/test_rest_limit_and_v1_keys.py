"""History, third version: the endReason enum (LOGOUT, REVOKED, EXPIRED) with its endedAt, and the
REST route's `?limit=` (default 50, 0..200, anything else 400) with the v1 shape unchanged."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import IssuedSession, NewSession
from tests.conftest import Users

ROUTE = "/v1/users/me/sessions"
JSON = "application/json"
EXAMPLE = json.loads(
    (Path(__file__).parent.parent / "contract" / "sessions-v1-example.json").read_text("utf-8")
)

HISTORY = """
{ me { history(first: 200) { edges { node { id endedAt endReason } } } } }
"""


def fresh_ip() -> str:
    """A random global IPv4 address, so no test shares geo cache entries."""
    return f"45.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"psession={token}"}


async def gql(client: httpx.AsyncClient, query: str, token: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"accept": JSON, **cookie(token)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def history(client: httpx.AsyncClient, token: str) -> dict[str, tuple[str, str]]:
    """{id: (endReason, endedAt)} of the user's history, as GraphQL answers it."""
    data = await gql(client, HISTORY, token)
    return {
        e["node"]["id"]: (e["node"]["endReason"], e["node"]["endedAt"])
        for e in data["me"]["history"]["edges"]
    }


# -- endReason ---------------------------------------------------------------------------------


async def test_end_reason_enum_has_exactly_the_three_values(
    client: httpx.AsyncClient, users: Users
) -> None:
    current = await users.session(users.new_id(), ip=fresh_ip())
    data = await gql(
        client, '{ __type(name: "EndReason") { kind enumValues { name } } }', current.token
    )
    assert data["__type"]["kind"] == "ENUM"
    assert {v["name"] for v in data["__type"]["enumValues"]} == {"LOGOUT", "REVOKED", "EXPIRED"}


async def test_logout_revoked_and_expired(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """A session ended through store.end is LOGOUT, one revoked through the API is REVOKED (both
    with the moment they ended), and one created already expired is EXPIRED with endedAt equal to
    its expires_at."""
    uid = users.new_id()
    current = await users.session(uid, ip=fresh_ip())
    logged_out = await users.session(uid, ip=fresh_ip())
    revoked = await users.session(uid, ip=fresh_ip())
    expired = await users.session(
        uid,
        ip=fresh_ip(),
        created_at=utcnow() - timedelta(hours=3),
        expires_at=utcnow() - timedelta(hours=1),
    )

    before = format_timestamp(utcnow())
    await resources.store.end(logged_out.token)
    response = await client.delete(f"{ROUTE}/{revoked.record.id}", headers=cookie(current.token))
    assert response.status_code == 204
    after = format_timestamp(utcnow())

    found = await history(client, current.token)
    assert set(found) == {logged_out.record.id, revoked.record.id, expired.record.id}
    assert found[logged_out.record.id][0] == "LOGOUT"
    assert found[revoked.record.id][0] == "REVOKED"
    assert found[expired.record.id] == ("EXPIRED", format_timestamp(expired.record.expires_at))
    for session in (logged_out, revoked):
        assert before <= found[session.record.id][1] <= after


async def test_ending_an_already_expired_session_keeps_it_expired(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """A session that expired before anyone ended it stays EXPIRED, ended at its expires_at, when
    it is logged out or revoked afterwards."""
    uid = users.new_id()
    current = await users.session(uid, ip=fresh_ip())
    stale = [
        await users.session(
            uid,
            ip=fresh_ip(),
            created_at=utcnow() - timedelta(hours=5),
            expires_at=utcnow() - timedelta(hours=2),
        )
        for _ in range(2)
    ]
    await resources.store.end(stale[0].token)
    await resources.store.revoke(user_id=uid, session_id=stale[1].record.id)
    found = await history(client, current.token)
    for session in stale:
        assert found[session.record.id] == ("EXPIRED", format_timestamp(session.record.expires_at))


async def test_imported_end_reasons_are_kept(client: httpx.AsyncClient, users: Users) -> None:
    """Sessions written already ended keep the reason they were written with."""
    uid = users.new_id()
    current = await users.session(uid, ip=fresh_ip())
    start = utcnow() - timedelta(days=2)
    ended = start + timedelta(hours=1)
    written = {
        reason: await users.session(
            uid, ip=fresh_ip(), created_at=start, ended_at=ended, end_reason=reason
        )
        for reason in ("logout", "revoked")
    }
    found = await history(client, current.token)
    for reason, session in written.items():
        assert found[session.record.id] == (reason.upper(), format_timestamp(ended))


# -- REST ?limit= ------------------------------------------------------------------------------


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


async def test_rest_shape_keeps_exactly_the_contract_keys(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """The v3 additions (device, lastSeenAt, endReason, signals, ids) stay out of REST: every
    session, history item and geo object has exactly the example's keys, with or without limit."""
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

"""GraphQL queries on the real app: `me`, active sessions with geo, and paginated history."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import NewSession
from tests.conftest import Users

GRAPHQL_RESPONSE = "application/graphql-response+json"

SESSIONS_QUERY = """
{
  me {
    id
    sessions {
      id tokenSuffix createdAt expiresAt clientIp userAgent isCurrent
      geo { countryCode isp org }
    }
  }
}
"""

HISTORY_QUERY = """
query History($first: Int, $after: String) {
  me {
    history(first: $first, after: $after) {
      edges { cursor node { id tokenSuffix createdAt endedAt clientIp userAgent } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

HISTORY_DEFAULT_QUERY = """
{ me { history { edges { node { id } } pageInfo { hasNextPage endCursor } } } }
"""


def fresh_ip(first_octet: int = 45) -> str:
    """A random address, so tests never share geo cache entries."""
    b, c, d = secrets.randbelow(256), secrets.randbelow(256), 1 + secrets.randbelow(254)
    return f"{first_octet}.{b}.{c}.{d}"


async def gql(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = {"accept": GRAPHQL_RESPONSE}
    if token is not None:
        headers["cookie"] = f"psession={token}"
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await client.post("/graphql", json=body, headers=headers)


async def history_page(
    client: httpx.AsyncClient, token: str, *, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    response = await gql(
        client, HISTORY_QUERY, token=token, variables={"first": first, "after": after}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["me"]["history"]


def error_codes(body: dict[str, Any]) -> list[str | None]:
    return [(e.get("extensions") or {}).get("code") for e in body.get("errors", [])]


# -- me ---------------------------------------------------------------------------------------


async def test_me_without_cookie_is_null_with_unauthenticated_error(
    client: httpx.AsyncClient,
) -> None:
    response = await gql(client, "{ me { id } }")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert body["data"] == {"me": None}
    assert len(body["errors"]) == 1
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["errors"][0]["path"] == ["me"]


async def test_me_with_unknown_or_ended_cookie_is_unauthenticated(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    user_id = users.new_id()
    created = await users.session(user_id, ip=fresh_ip())
    await resources.store.end(created.token)
    for token in (created.token, "x" * 43, "not a token at all!"):
        body = (await gql(client, "{ me { id } }", token=token)).json()
        assert body["data"] == {"me": None}, token
        assert error_codes(body) == ["UNAUTHENTICATED"], token


async def test_me_is_the_cookies_user(client: httpx.AsyncClient, users: Users) -> None:
    user_id = users.new_id()
    created = await users.session(user_id, ip=fresh_ip())
    body = (await gql(client, "{ me { id } }", token=created.token)).json()
    assert body == {"data": {"me": {"id": user_id}}}


# -- sessions ---------------------------------------------------------------------------------


async def test_sessions_newest_first_with_current_marked_and_geo(
    client: httpx.AsyncClient, users: Users
) -> None:
    user_id = users.new_id()
    now = utcnow()
    private_ip = fresh_ip(10)
    oldest = await users.session(
        user_id, ip="8.8.8.8", user_agent="Firefox", created_at=now - timedelta(hours=3)
    )
    current = await users.session(
        user_id,
        ip=private_ip,
        user_agent="Safari",
        created_at=now - timedelta(hours=2),
        expires_at=now + timedelta(days=2),
    )
    newest = await users.session(
        user_id, ip=fresh_ip(), user_agent="Chrome", created_at=now - timedelta(hours=1)
    )
    # Another user's session must not show up.
    await users.session(users.new_id(), ip=fresh_ip())

    response = await gql(client, SESSIONS_QUERY, token=current.token)
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    sessions = body["data"]["me"]["sessions"]

    assert [s["id"] for s in sessions] == [newest.record.id, current.record.id, oldest.record.id]
    assert [s["isCurrent"] for s in sessions] == [False, True, False]

    by_id = {s["id"]: s for s in sessions}
    mine = by_id[current.record.id]
    assert mine["tokenSuffix"] == current.token[-6:]
    assert mine["createdAt"] == format_timestamp(now - timedelta(hours=2))
    assert mine["expiresAt"] == format_timestamp(now + timedelta(days=2))
    assert mine["clientIp"] == private_ip
    assert mine["userAgent"] == "Safari"
    assert mine["geo"] is None  # a private address is never located

    google = by_id[oldest.record.id]
    assert google["clientIp"] == "8.8.8.8"
    assert google["userAgent"] == "Firefox"
    assert google["geo"] == {"countryCode": "US", "isp": "GOOGLE", "org": "GOOGLE"}
    for s in sessions:
        assert s["createdAt"].endswith("Z") and len(s["createdAt"]) == 20


# -- history ----------------------------------------------------------------------------------


async def _user_with_history(
    users: Users, *, past: int, active: int
) -> tuple[str, str, list[Any], list[Any]]:
    """A user with `past` ended/expired sessions (alternating) and `active` live ones.
    Returns (user_id, token of an active session, past IssuedSessions newest first, active
    IssuedSessions)."""
    user_id = users.new_id()
    now = utcnow()
    past_sessions = []
    for i in range(past):
        created_at = now - timedelta(days=30 - i)
        if i % 2:
            fields: dict[str, Any] = {
                "ended_at": created_at + timedelta(hours=1),
                "end_reason": "logout",
            }
        else:  # expired, never ended
            fields = {"expires_at": created_at + timedelta(days=1)}
        past_sessions.append(
            await users.session(user_id, ip=fresh_ip(), created_at=created_at, **fields)
        )
    live = [
        await users.session(user_id, ip=fresh_ip(), created_at=now - timedelta(minutes=m + 1))
        for m in range(active)
    ]
    return user_id, live[0].token, list(reversed(past_sessions)), live


async def test_history_pages_walk_every_past_session_once_newest_first(
    client: httpx.AsyncClient, users: Users
) -> None:
    _, token, past, live = await _user_with_history(users, past=7, active=2)

    seen: list[str] = []
    pages = []
    after = None
    while True:
        page = await history_page(client, token, first=3, after=after)
        pages.append(page)
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 10, "pagination does not end"

    assert [len(p["edges"]) for p in pages] == [3, 3, 1]
    assert seen == [c.record.id for c in past]
    assert not {c.record.id for c in live} & set(seen)

    # After the last item there is an empty page with no cursor.
    last = pages[-1]["pageInfo"]["endCursor"]
    assert last is not None
    empty = await history_page(client, token, first=3, after=last)
    assert empty == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}

    # A page that takes exactly what is left says there is nothing more.
    exact = await history_page(client, token, first=7)
    assert len(exact["edges"]) == 7
    assert exact["pageInfo"]["hasNextPage"] is False
    assert (await history_page(client, token, first=6))["pageInfo"]["hasNextPage"] is True
    rest = await history_page(client, token, first=4, after=pages[0]["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in rest["edges"]] == seen[3:]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_history_fields_and_expired_session_ends_at_its_expiry(
    client: httpx.AsyncClient, users: Users
) -> None:
    _, token, past, _ = await _user_with_history(users, past=2, active=1)
    page = await history_page(client, token)
    nodes = {e["node"]["id"]: e["node"] for e in page["edges"]}
    assert set(nodes) == {c.record.id for c in past}
    for created in past:
        node = nodes[created.record.id]
        record = created.record
        assert node["tokenSuffix"] == created.token[-6:]
        assert node["createdAt"] == format_timestamp(record.created_at)
        assert node["clientIp"] == record.client_ip
        assert node["userAgent"] == "pytest"
        if record.ended_at is None:  # expired, never ended
            assert node["endedAt"] == format_timestamp(record.expires_at)
        else:
            assert node["endedAt"] == format_timestamp(record.ended_at)


async def test_ended_active_session_moves_to_history(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    user_id = users.new_id()
    keep = await users.session(user_id, ip=fresh_ip())
    gone = await users.session(user_id, ip=fresh_ip())
    page = await history_page(client, keep.token)
    assert page["edges"] == []

    await resources.store.end(gone.token)
    page = await history_page(client, keep.token)
    assert [e["node"]["id"] for e in page["edges"]] == [gone.record.id]
    sessions = (await gql(client, SESSIONS_QUERY, token=keep.token)).json()["data"]["me"]
    assert [s["id"] for s in sessions["sessions"]] == [keep.record.id]


async def test_history_default_page_is_50(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    user_id = users.new_id()
    start = utcnow() - timedelta(days=60)
    await resources.store.create_many(
        [
            NewSession(
                user_id=user_id,
                ip=fresh_ip(),
                created_at=start + timedelta(minutes=i),
                expires_at=start + timedelta(minutes=i, hours=1),
            )
            for i in range(52)
        ]
    )
    token = (await users.session(user_id, ip=fresh_ip())).token
    response = await gql(client, HISTORY_DEFAULT_QUERY, token=token)
    history = response.json()["data"]["me"]["history"]
    assert len(history["edges"]) == 50
    assert history["pageInfo"]["hasNextPage"] is True


async def test_history_first_zero_gives_no_edges(client: httpx.AsyncClient, users: Users) -> None:
    _, token, _, _ = await _user_with_history(users, past=2, active=1)
    page = await history_page(client, token, first=0)
    assert page["edges"] == []


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"after": "garbage"}, id="after-garbage"),
        pytest.param(
            {"after": base64.urlsafe_b64encode(b"complete nonsense").decode()}, id="after-b64"
        ),
        pytest.param(
            {"after": base64.urlsafe_b64encode(b"123:not-a-uuid").decode()}, id="after-no-uuid"
        ),
        pytest.param({"after": "A" * 5000}, id="after-huge"),
        pytest.param({"first": -1}, id="first-negative"),
        pytest.param({"first": 201}, id="first-too-big"),
    ],
)
async def test_bad_history_arguments_are_bad_user_input(
    client: httpx.AsyncClient, users: Users, variables: dict[str, Any]
) -> None:
    _, token, _, _ = await _user_with_history(users, past=1, active=1)
    response = await gql(client, HISTORY_QUERY, token=token, variables=variables)
    assert response.status_code == 200, response.text
    body = response.json()
    # history is nullable: the bad argument nulls it alone, not the whole `me`.
    assert body["data"] == {"me": {"history": None}}
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] != "Unexpected error."
    assert body["errors"][0]["path"] == ["me", "history"]


async def test_first_200_is_allowed(client: httpx.AsyncClient, users: Users) -> None:
    _, token, _, _ = await _user_with_history(users, past=2, active=1)
    page = await history_page(client, token, first=200)
    assert len(page["edges"]) == 2


async def test_another_users_cursor_never_leaks_their_sessions(
    client: httpx.AsyncClient, users: Users
) -> None:
    _, alice_token, alice_past, _ = await _user_with_history(users, past=6, active=1)
    _, bob_token, bob_past, _ = await _user_with_history(users, past=6, active=1)
    alice_cursor = (await history_page(client, alice_token, first=2))["pageInfo"]["endCursor"]

    page = await history_page(client, bob_token, first=50, after=alice_cursor)
    ids = {e["node"]["id"] for e in page["edges"]}
    assert ids <= {c.record.id for c in bob_past}
    assert not ids & {c.record.id for c in alice_past}
    # Alice's cursor only says "older than this point": Bob sees his own older sessions.
    assert ids


async def test_history_cursor_handles_equal_created_at(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    """Sessions created in the same second are still each returned exactly once."""
    user_id = users.new_id()
    at = utcnow() - timedelta(days=5)
    created = await resources.store.create_many(
        [
            NewSession(
                user_id=user_id, ip=fresh_ip(), created_at=at, expires_at=at + timedelta(hours=1)
            )
            for _ in range(5)
        ]
    )
    token = (await users.session(user_id, ip=fresh_ip())).token
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = await history_page(client, token, first=2, after=after)
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(c.record.id for c in created)
    assert len(seen) == len(set(seen))

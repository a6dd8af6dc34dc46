"""`history` (resolvers/history.py) on the real app: a user's past sessions in pages, newest first,
with cursors that walk every one exactly once (also rows of the same second, or written by another
writer to the microsecond), bad arguments as BAD_USER_INPUT, and each session's end: endReason
(LOGOUT, REVOKED, EXPIRED) with its endedAt."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import NewSession
from store.tokens import new_token
from tests.app_client import ROUTE, cookie, error_codes, fresh_ip, graphql_data, post_graphql
from tests.conftest import Users

pytestmark = pytest.mark.redis_topologies

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


async def history_page(
    client: httpx.AsyncClient, token: str, *, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    data = await graphql_data(
        client, HISTORY_QUERY, token=token, variables={"first": first, "after": after}
    )
    history: dict[str, Any] = data["me"]["history"]
    return history


async def walk(client: httpx.AsyncClient, token: str, *, first: int, pages: int) -> list[str]:
    """The ids that pages of `first` yield from the start, each page asked after the previous
    one's endCursor (its last edge's cursor). At most `pages` pages: a cursor that never advances
    must not loop forever."""
    seen: list[str] = []
    after: str | None = None
    for _ in range(pages):
        page = await history_page(client, token, first=first, after=after)
        assert len(page["edges"]) <= first
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    return seen


# -- pages -----------------------------------------------------------------------------------------


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
    sessions = await graphql_data(client, "{ me { sessions { id } } }", token=keep.token)
    assert [s["id"] for s in sessions["me"]["sessions"]] == [keep.record.id]


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
    response = await post_graphql(client, HISTORY_DEFAULT_QUERY, token=token)
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
    response = await post_graphql(client, HISTORY_QUERY, token=token, variables=variables)
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
    seen = await walk(client, token, first=2, pages=10)
    assert sorted(seen) == sorted(c.record.id for c in created)
    assert len(seen) == len(set(seen))


async def test_history_pages_cover_sub_second_rows_of_another_writer_exactly_once(
    client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    """Another writer may store created_at with microseconds. Walking `history(first: 2)` with
    each page's endCursor must yield every past session once, newest first, even when a page
    boundary falls between rows of the same second."""
    user_id = users.new_id()
    current = await users.session(user_id, ip=fresh_ip())
    base = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
    times = [base + timedelta(microseconds=100_000 * k) for k in range(1, 6)]  # .1 .. .5
    times += [
        base - timedelta(seconds=1),  # the second before, on a whole second
        base + timedelta(seconds=1, microseconds=1),  # the second after, one microsecond in
        base + timedelta(microseconds=300_000),  # the same instant as another row: id decides
        base + timedelta(microseconds=999_999),
    ]
    rows = []
    for created_at in times:
        token = new_token()
        rows.append(
            (
                uuid.uuid4(),
                user_id,
                hashlib.sha256(token.encode()).hexdigest(),
                token[-6:],
                created_at,
                created_at + timedelta(days=30),
                created_at + timedelta(minutes=5),
                "logout",
                fresh_ip(),
                "other-writer",
            )
        )
    await resources.store.pool.executemany(
        """INSERT INTO sessions (id, user_id, token_hash, token_suffix, created_at, expires_at,
                                 ended_at, end_reason, client_ip, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::inet, $10)""",
        rows,
    )
    expected = [str(r[0]) for r in sorted(rows, key=lambda r: (r[4], r[0]), reverse=True)]

    assert await walk(client, current.token, first=2, pages=len(rows) + 2) == expected


# -- how sessions ended ----------------------------------------------------------------------------

ENDS_QUERY = """
{ me { history(first: 200) { edges { node { id endedAt endReason } } } } }
"""


async def ends(client: httpx.AsyncClient, token: str) -> dict[str, tuple[str, str]]:
    """{id: (endReason, endedAt)} of the user's history, as GraphQL answers it."""
    data = await graphql_data(client, ENDS_QUERY, token=token)
    return {
        e["node"]["id"]: (e["node"]["endReason"], e["node"]["endedAt"])
        for e in data["me"]["history"]["edges"]
    }


async def test_end_reason_enum_has_exactly_the_three_values(
    client: httpx.AsyncClient, users: Users
) -> None:
    current = await users.session(users.new_id(), ip=fresh_ip())
    data = await graphql_data(
        client, '{ __type(name: "EndReason") { kind enumValues { name } } }', token=current.token
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
    assert response.content == b""
    after = format_timestamp(utcnow())

    found = await ends(client, current.token)
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
    found = await ends(client, current.token)
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
    found = await ends(client, current.token)
    for reason, session in written.items():
        assert found[session.record.id] == (reason.upper(), format_timestamp(ended))

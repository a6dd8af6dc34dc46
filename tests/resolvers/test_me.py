"""`me` (resolvers/me.py) on the real app: the cookie's user, UNAUTHENTICATED without a valid
cookie, and only that user's sessions: users are isolated from each other, over GraphQL and REST.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import utcnow
from store.sessions import IssuedSession
from tests.app_client import (
    GRAPHQL_RESPONSE,
    ME,
    ROUTE,
    cookie,
    error_codes,
    fresh_ip,
    graphql_data,
    post_graphql,
)
from tests.conftest import Users
from tests.http_errors import assert_rest_error

pytestmark = pytest.mark.redis_topologies

ME_QUERY = "{ me { id sessions { id tokenSuffix } history { edges { node { id } } } } }"


async def user_with_sessions(
    users: Users, label: str
) -> tuple[str, list[IssuedSession], list[IssuedSession]]:
    """A user with two active and two past sessions, user agents labelled with `label`."""
    uid = users.new_id()
    now = utcnow()
    active = [
        await users.session(
            uid,
            ip=fresh_ip(),
            user_agent=f"{label}-active-{n}",
            created_at=now - timedelta(hours=n),
        )
        for n in range(2)
    ]
    past = [
        await users.session(
            uid,
            ip=fresh_ip(),
            user_agent=f"{label}-past-{n}",
            created_at=now - timedelta(days=3, hours=n),
            ended_at=now - timedelta(days=2, hours=n),
        )
        for n in range(2)
    ]
    return uid, active, past


# -- the cookie's user -----------------------------------------------------------------------------


async def test_me_without_cookie_is_null_with_unauthenticated_error(
    client: httpx.AsyncClient,
) -> None:
    response = await post_graphql(client, ME)
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
        body = (await post_graphql(client, ME, token=token)).json()
        assert body["data"] == {"me": None}, token
        assert error_codes(body) == ["UNAUTHENTICATED"], token


async def test_me_is_the_cookies_user(client: httpx.AsyncClient, users: Users) -> None:
    user_id = users.new_id()
    created = await users.session(user_id, ip=fresh_ip())
    body = (await post_graphql(client, ME, token=created.token)).json()
    assert body == {"data": {"me": {"id": user_id}}}


# -- isolation -------------------------------------------------------------------------------------


async def test_a_user_never_sees_another_users_sessions(
    client: httpx.AsyncClient, users: Users
) -> None:
    a_id, a_active, a_past = await user_with_sessions(users, "A")
    b_id, b_active, b_past = await user_with_sessions(users, "B")
    # Both users' sessions from the same address: geo must not be a way to mix them up either.
    shared_ip = fresh_ip()
    a_active.append(await users.session(a_id, ip=shared_ip, user_agent="A-active-shared"))
    b_active.append(await users.session(b_id, ip=shared_ip, user_agent="B-active-shared"))

    for me_id, mine, theirs in (
        (a_id, (a_active, a_past), (b_active, b_past)),
        (b_id, (b_active, b_past), (a_active, a_past)),
    ):
        my_active, my_past = mine
        their_ids = {c.record.id for c in theirs[0] + theirs[1]}
        their_agents = {c.record.user_agent for c in theirs[0] + theirs[1]}

        for token in (c.token for c in my_active):
            rest = await client.get(ROUTE, headers=cookie(token))
            assert rest.status_code == 200, rest.text
            body = rest.json()
            agents = [s["user_agent"] for s in body["sessions"]] + [
                h["user_agent"] for h in body["history"]
            ]
            assert set(agents) == {c.record.user_agent for c in my_active + my_past}
            assert not set(agents) & their_agents

            me = (await graphql_data(client, ME_QUERY, token=token))["me"]
            assert me["id"] == me_id
            session_ids = {s["id"] for s in me["sessions"]}
            history_ids = {e["node"]["id"] for e in me["history"]["edges"]}
            assert session_ids == {c.record.id for c in my_active}
            assert history_ids == {c.record.id for c in my_past}
            assert not (session_ids | history_ids) & their_ids


async def test_ending_a_session_of_one_user_leaves_the_other_signed_in(
    client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    _, a_active, _ = await user_with_sessions(users, "A")
    _, b_active, _ = await user_with_sessions(users, "B")
    await resources.store.end(a_active[0].token)
    assert_rest_error(
        await client.get(ROUTE, headers=cookie(a_active[0].token)), 401, "unauthenticated"
    )
    for created in (a_active[1], *b_active):
        response = await client.get(ROUTE, headers=cookie(created.token))
        assert response.status_code == 200
        # Signed in as themselves: their session is the current one.
        [current] = [s for s in response.json()["sessions"] if s["is_current"]]
        assert current["token_suffix"] == created.record.token_suffix

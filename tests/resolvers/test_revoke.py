"""Revoking sessions: the GraphQL mutations revokeSession / revokeOtherSessions and the REST
DELETE routes, idempotence, refusing the current session, two users who try to touch each
other's sessions, revocation seen at once by a second server process, and no mutations over GET.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import IssuedSession
from store.tokens import hash_token
from tests.app_client import JSON, ROUTE, cookie, fresh_ip, signs_in
from tests.conftest import Users
from tests.http_errors import assert_graphql_http_error, assert_rest_error
from tests.servers import serve_process

pytestmark = pytest.mark.redis_topologies

REVOKE = "mutation Revoke($id: ID!) { revokeSession(id: $id) }"
REVOKE_OTHERS = "mutation { revokeOtherSessions }"
STATE = """
{
  me {
    sessions { id isCurrent }
    history(first: 200) { edges { node { id endedAt endReason } } }
  }
}
"""


async def gql(
    client: httpx.AsyncClient,
    query: str,
    token: str | None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs a GraphQL document over POST (application/json, so errors come with 200). Each
    error's `requestId` (every request's own) is dropped: answers compare by what they say."""
    headers = {"accept": JSON, **(cookie(token) if token else {})}
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = await client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    for error in answer.get("errors", []):
        assert error["extensions"].pop("requestId") == response.headers["x-request-id"]
    return answer


async def revoke(client: httpx.AsyncClient, token: str, session_id: str) -> dict[str, Any]:
    return await gql(client, REVOKE, token, {"id": session_id})


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"]


async def state(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """What the user sees: {"active": {id: isCurrent}, "history": {id: (endedAt, endReason)}}."""
    body = await gql(client, STATE, token)
    assert "errors" not in body, body
    me = body["data"]["me"]
    return {
        "active": {s["id"]: s["isCurrent"] for s in me["sessions"]},
        "history": {
            e["node"]["id"]: (e["node"]["endedAt"], e["node"]["endReason"])
            for e in me["history"]["edges"]
        },
    }


async def active_user(users: Users, n: int) -> list[IssuedSession]:
    """A fresh user with n active sessions, each from its own address."""
    uid = users.new_id()
    return [await users.session(uid, ip=fresh_ip()) for _ in range(n)]


# -- GraphQL: revokeSession ------------------------------------------------------------------------


async def test_revoke_session_ends_it_at_once_and_records_it(
    client: httpx.AsyncClient, users: Users
) -> None:
    """revokeSession of another of my sessions answers true; its token gets 401 on its very next
    request; it leaves my sessions and appears in my history as REVOKED with endedAt."""
    me, other = await active_user(users, 2)
    assert await signs_in(client, other.token)

    body = await revoke(client, me.token, other.record.id)
    assert body == {"data": {"revokeSession": True}}

    assert not await signs_in(client, other.token)
    seen = await state(client, me.token)
    assert seen["active"] == {me.record.id: True}
    ended_at, reason = seen["history"][other.record.id]
    assert reason == "REVOKED"
    assert ended_at is not None


async def test_revoke_session_is_idempotent(client: httpx.AsyncClient, users: Users) -> None:
    """Revoking an already revoked session answers true again and keeps its first endedAt."""
    me, other = await active_user(users, 2)
    assert (await revoke(client, me.token, other.record.id))["data"] == {"revokeSession": True}
    first = (await state(client, me.token))["history"][other.record.id]
    await asyncio.sleep(
        1.1
    )  # so a second write of endedAt would show (timestamps are to the second)
    assert (await revoke(client, me.token, other.record.id))["data"] == {"revokeSession": True}
    assert (await state(client, me.token))["history"][other.record.id] == first
    assert not await signs_in(client, other.token)


async def test_revoking_a_session_that_ended_by_logout_keeps_its_end(
    client: httpx.AsyncClient, users: Users
) -> None:
    """One of my past sessions (ended by logout) can be 'revoked': true, and it stays LOGOUT."""
    me, other = await active_user(users, 2)
    await users.resources.store.end(other.token)
    before = (await state(client, me.token))["history"][other.record.id]
    assert before[1] == "LOGOUT"
    assert (await revoke(client, me.token, other.record.id))["data"] == {"revokeSession": True}
    assert (await state(client, me.token))["history"][other.record.id] == before


def other_spellings(session_id: str) -> list[str]:
    return [
        session_id.upper(),
        "{" + session_id + "}",
        "urn:uuid:" + session_id,
        session_id.replace("-", ""),
    ]


async def test_revoking_the_current_session_is_refused(
    client: httpx.AsyncClient, users: Users
) -> None:
    """revokeSession(current) fails with CURRENT_SESSION and the session keeps working, however
    its id is spelt (Postgres reads all these as the same UUID)."""
    me, other = await active_user(users, 2)
    spellings = [me.record.id, *other_spellings(me.record.id)]
    for spelling in spellings:
        body = await revoke(client, me.token, spelling)
        assert body.get("data") is None, spelling
        assert error_code(body) == "CURRENT_SESSION"
        assert body["errors"][0]["message"]
        assert await signs_in(client, me.token)
    assert (await state(client, me.token))["active"] == {me.record.id: True, other.record.id: False}


async def test_unknown_malformed_and_other_users_ids_are_the_same_not_found(
    client: httpx.AsyncClient, users: Users
) -> None:
    """An unknown uuid, a malformed id and another user's session id all get NOT_FOUND with the
    very same answer; the other user's session is untouched and in nobody's history."""
    (me,) = await active_user(users, 1)
    (theirs,) = await active_user(users, 1)
    answers = [
        await revoke(client, me.token, session_id)
        for session_id in (str(uuid.uuid4()), "x", theirs.record.id)
    ]
    assert error_code(answers[0]) == "NOT_FOUND"
    assert answers[0].get("data") is None
    assert answers[1] == answers[0]
    assert answers[2] == answers[0]

    assert await signs_in(client, theirs.token)
    assert await state(client, theirs.token) == {"active": {theirs.record.id: True}, "history": {}}
    assert await state(client, me.token) == {"active": {me.record.id: True}, "history": {}}


async def test_revoke_needs_a_session(client: httpx.AsyncClient, users: Users) -> None:
    """Without a valid cookie both mutations are UNAUTHENTICATED and nothing is revoked."""
    (victim,) = await active_user(users, 1)
    for token in (None, "not-a-real-token-0123456789"):
        assert error_code(await revoke(client, token, victim.record.id)) == "UNAUTHENTICATED"  # type: ignore[arg-type]
        assert error_code(await gql(client, REVOKE_OTHERS, token)) == "UNAUTHENTICATED"
    assert await signs_in(client, victim.token)


# -- GraphQL: revokeOtherSessions ------------------------------------------------------------------


async def test_revoke_other_sessions(client: httpx.AsyncClient, users: Users) -> None:
    """With 4 active sessions revokeOtherSessions answers 3 and only the current one is left; the
    3 are REVOKED in history and get 401. A second call answers 0."""
    me, *others = await active_user(users, 4)
    assert await gql(client, REVOKE_OTHERS, me.token) == {"data": {"revokeOtherSessions": 3}}

    seen = await state(client, me.token)
    assert seen["active"] == {me.record.id: True}
    assert {sid: reason for sid, (_, reason) in seen["history"].items()} == {
        o.record.id: "REVOKED" for o in others
    }
    for other in others:
        assert not await signs_in(client, other.token)
    assert await signs_in(client, me.token)

    assert await gql(client, REVOKE_OTHERS, me.token) == {"data": {"revokeOtherSessions": 0}}
    assert (await state(client, me.token))["history"] == seen["history"]


async def test_revoke_other_sessions_leaves_past_sessions_alone(
    client: httpx.AsyncClient, users: Users
) -> None:
    """Sessions that already ended are not counted and keep their end reason."""
    me, other, done = await active_user(users, 3)
    await users.resources.store.end(done.token)
    assert await gql(client, REVOKE_OTHERS, me.token) == {"data": {"revokeOtherSessions": 1}}
    history = (await state(client, me.token))["history"]
    assert history[other.record.id][1] == "REVOKED"
    assert history[done.record.id][1] == "LOGOUT"


# -- REST ------------------------------------------------------------------------------------------


async def test_rest_delete_one_session(client: httpx.AsyncClient, users: Users) -> None:
    """DELETE /v1/users/me/sessions/{id} answers 204 with an empty body and no-store; the token
    gets 401 at once and the session is REVOKED in history. Again: 204 still."""
    me, other = await active_user(users, 2)
    response = await client.delete(f"{ROUTE}/{other.record.id}", headers=cookie(me.token))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers.get("cache-control") == "no-store"
    assert not await signs_in(client, other.token)
    assert (await state(client, me.token))["history"][other.record.id][1] == "REVOKED"

    again = await client.delete(f"{ROUTE}/{other.record.id}", headers=cookie(me.token))
    assert again.status_code == 204
    assert again.content == b""


async def test_rest_unknown_and_other_users_ids_are_identical_404s(
    client: httpx.AsyncClient, users: Users
) -> None:
    """An unknown id and another user's id get byte-identical 404 bodies (code not_found)."""
    (me,) = await active_user(users, 1)
    (theirs,) = await active_user(users, 1)
    unknown = await client.delete(f"{ROUTE}/{uuid.uuid4()}", headers=cookie(me.token))
    other = await client.delete(f"{ROUTE}/{theirs.record.id}", headers=cookie(me.token))
    malformed = await client.delete(f"{ROUTE}/x", headers=cookie(me.token))
    for response in (unknown, other, malformed):
        assert response.status_code == 404, response.text
        assert response.headers.get("cache-control") == "no-store"
        assert response.headers["content-type"].startswith(JSON)
    assert unknown.json()["error"]["code"] == "not_found"
    assert_rest_error(unknown, 404, "not_found")
    assert other.content == unknown.content
    assert malformed.content == unknown.content
    assert await signs_in(client, theirs.token)


async def test_rest_delete_current_session_is_409(client: httpx.AsyncClient, users: Users) -> None:
    (me,) = await active_user(users, 1)
    for spelling in [me.record.id, *other_spellings(me.record.id)]:
        response = await client.delete(f"{ROUTE}/{spelling}", headers=cookie(me.token))
        assert response.status_code == 409, (spelling, response.text)
        assert response.json()["error"]["code"] == "current_session"
        assert response.json()["error"]["message"]
        assert response.headers.get("cache-control") == "no-store"
        assert_rest_error(response, 409, "current_session")
        assert await signs_in(client, me.token)


async def test_an_id_another_writer_spelt_in_upper_case_is_still_the_current_session(
    client: httpx.AsyncClient, users: Users
) -> None:
    """Redis holds the id as a writer wrote it; the current-session check must not depend on
    that writer's spelling."""
    me, _other = await active_user(users, 2)
    store = users.resources.store
    await store.redis.hset(
        store.keys.session(me.record.user_id, me.record.token_hash), "id", me.record.id.upper()
    )
    response = await client.delete(f"{ROUTE}/{me.record.id.upper()}", headers=cookie(me.token))
    assert response.status_code == 409, response.text
    assert_rest_error(response, 409, "current_session")
    assert await signs_in(client, me.token)
    sessions = (await client.get(ROUTE, headers=cookie(me.token))).json()["sessions"]
    assert [s["is_current"] for s in sessions].count(True) == 1


async def test_another_spelling_of_an_id_revokes_that_session(
    client: httpx.AsyncClient, users: Users
) -> None:
    me, other = await active_user(users, 2)
    response = await client.delete(f"{ROUTE}/{other.record.id.upper()}", headers=cookie(me.token))
    assert response.status_code == 204
    assert response.content == b""
    assert not await signs_in(client, other.token)


async def test_rest_delete_without_a_session_is_401(
    client: httpx.AsyncClient, users: Users
) -> None:
    """No cookie, or a cookie of no session: 401 JSON on both DELETE routes; nothing revoked."""
    victim, other = await active_user(users, 2)
    for headers in ({}, cookie("not-a-real-token-0123456789")):
        for url in (f"{ROUTE}/{other.record.id}", ROUTE):
            response = await client.delete(url, headers=headers)
            assert response.status_code == 401, (url, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers.get("cache-control") == "no-store"
            assert_rest_error(response, 401, "unauthenticated")
    assert await signs_in(client, victim.token)
    assert await signs_in(client, other.token)


async def test_rest_delete_all_other_sessions(client: httpx.AsyncClient, users: Users) -> None:
    """DELETE /v1/users/me/sessions answers 200 {"count": n} (no-store); then {"count": 0}."""
    me, *others = await active_user(users, 3)
    response = await client.delete(ROUTE, headers=cookie(me.token))
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 2}
    assert response.headers.get("cache-control") == "no-store"
    for other in others:
        assert not await signs_in(client, other.token)
    listed = (await client.get(ROUTE, headers=cookie(me.token))).json()
    assert [s["token_suffix"] for s in listed["sessions"]] == [me.token[-6:]]

    again = await client.delete(ROUTE, headers=cookie(me.token))
    assert (again.status_code, again.json()) == (200, {"count": 0})


# -- two users -------------------------------------------------------------------------------------


async def _attack(
    client: httpx.AsyncClient, attacker: IssuedSession, victims: list[IssuedSession]
) -> None:
    """The attacker tries every way to revoke the victim's sessions (by id, token, token hash),
    in GraphQL and REST; each answer must be exactly the answer for a random id."""
    baseline_id = str(uuid.uuid4())
    gql_baseline = await revoke(client, attacker.token, baseline_id)
    rest_baseline = await client.delete(f"{ROUTE}/{baseline_id}", headers=cookie(attacker.token))
    assert error_code(gql_baseline) == "NOT_FOUND"
    assert rest_baseline.status_code == 404
    assert_rest_error(rest_baseline, 404, "not_found")
    for victim in victims:
        for guess in (victim.record.id, victim.token, hash_token(victim.token)):
            assert await revoke(client, attacker.token, guess) == gql_baseline, guess
            response = await client.delete(f"{ROUTE}/{guess}", headers=cookie(attacker.token))
            assert (response.status_code, response.content) == (
                rest_baseline.status_code,
                rest_baseline.content,
            ), guess


async def test_two_users_cannot_touch_each_others_sessions(
    client: httpx.AsyncClient, users: Users
) -> None:
    """A and B each try to revoke the other's sessions (active and past) through GraphQL and REST,
    and to revoke "all other" sessions. Nothing of the other changes, every answer equals the
    one for a random id, and neither ever sees the other's sessions."""
    a_id, b_id = users.new_id(), users.new_id()
    (a,) = [await users.session(a_id, ip=fresh_ip())]
    a_past = await users.session(a_id, ip=fresh_ip(), created_at=utcnow(), ended_at=utcnow())
    b = [await users.session(b_id, ip=fresh_ip()) for _ in range(3)]
    b_past = await users.session(
        b_id, ip=fresh_ip(), created_at=utcnow(), ended_at=utcnow(), end_reason="revoked"
    )
    a_ids = {a.record.id, a_past.record.id}
    b_ids = {s.record.id for s in [*b, b_past]}
    a_before = await state(client, a.token)
    b_before = await state(client, b[0].token)
    assert set(a_before["active"]) | set(a_before["history"]) == a_ids
    assert set(b_before["active"]) | set(b_before["history"]) == b_ids

    # A against B: B keeps everything, A learns nothing new.
    await _attack(client, a, [*b, b_past])
    assert await gql(client, REVOKE_OTHERS, a.token) == {"data": {"revokeOtherSessions": 0}}
    response = await client.delete(ROUTE, headers=cookie(a.token))
    assert (response.status_code, response.json()) == (200, {"count": 0})
    assert await state(client, b[0].token) == b_before
    assert await state(client, a.token) == a_before
    for session in b:
        assert await signs_in(client, session.token)

    # B against A: A keeps everything. B's "all others" only ever ends B's own.
    await _attack(client, b[0], [a, a_past])
    assert await gql(client, REVOKE_OTHERS, b[0].token) == {"data": {"revokeOtherSessions": 2}}
    assert await state(client, a.token) == a_before
    assert await signs_in(client, a.token)
    b_after = await state(client, b[0].token)
    assert set(b_after["active"]) | set(b_after["history"]) == b_ids


# -- a second server process -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_process(
    settings: Settings,
    database: str,
    redis_keyspace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`sessions-api serve` in a process of its own, on the same Postgres database and Redis
    keyspace (or cluster) as the in-process `server`; yields its base URL."""
    log_path = tmp_path_factory.mktemp("second") / "serve.log"
    with serve_process(settings, log_path) as url:
        yield url


async def test_revocation_in_one_process_is_seen_by_another_at_once(
    client: httpx.AsyncClient, second_process: str, users: Users
) -> None:
    """A token that works on the second process gets 401 there on its very next request after
    it was revoked through the in-process server, and the other way round."""
    me, first_victim, second_victim = await active_user(users, 3)
    async with httpx.AsyncClient(base_url=second_process, timeout=20) as other_process:
        # Revoked here, seen there.
        assert await signs_in(other_process, first_victim.token)
        response = await client.delete(
            f"{ROUTE}/{first_victim.record.id}", headers=cookie(me.token)
        )
        assert response.status_code == 204
        assert response.content == b""
        assert not await signs_in(other_process, first_victim.token)
        body = await gql(other_process, "{ me { id } }", first_victim.token)
        assert error_code(body) == "UNAUTHENTICATED"

        # Revoked there, seen here.
        assert await signs_in(client, second_victim.token)
        body = await revoke(other_process, me.token, second_victim.record.id)
        assert body == {"data": {"revokeSession": True}}
        assert not await signs_in(client, second_victim.token)

        # Both processes tell the same story.
        assert await state(client, me.token) == await state(other_process, me.token)


async def test_revoke_others_in_one_process_is_seen_by_another(
    client: httpx.AsyncClient, second_process: str, users: Users
) -> None:
    me, *others = await active_user(users, 3)
    async with httpx.AsyncClient(base_url=second_process, timeout=20) as other_process:
        for other in others:
            assert await signs_in(client, other.token)
        response = await other_process.delete(ROUTE, headers=cookie(me.token))
        assert (response.status_code, response.json()) == (200, {"count": 2})
        for other in others:
            assert not await signs_in(client, other.token)
            assert not await signs_in(other_process, other.token)


# -- no mutations over GET -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        ("mutation { revokeOtherSessions }", None),
        ("mutation R($id: ID!) { revokeSession(id: $id) }", None),
        ("query Q { me { id } } mutation M { revokeOtherSessions }", "M"),
    ],
)
async def test_mutations_over_get_are_405_and_change_nothing(
    client: httpx.AsyncClient, users: Users, document: str, operation: str | None
) -> None:
    me, other = await active_user(users, 2)
    params = {"query": document, "variables": f'{{"id": "{other.record.id}"}}'}
    if operation:
        params["operationName"] = operation
    for accept in (JSON, "application/graphql-response+json"):
        response = await client.get(
            "/graphql", params=params, headers={"accept": accept, **cookie(me.token)}
        )
        assert response.status_code == 405, response.text
        assert "POST" in response.headers.get("allow", "")
        assert_graphql_http_error(response, 405, "METHOD_NOT_ALLOWED")
    assert await signs_in(client, other.token)
    assert (await state(client, me.token))["active"] == {me.record.id: True, other.record.id: False}


async def test_queries_over_get_still_work(client: httpx.AsyncClient, users: Users) -> None:
    """The 405 is about mutations only: the same GET with a query answers."""
    (me,) = await active_user(users, 1)
    response = await client.get(
        "/graphql", params={"query": "{ me { id } }"}, headers={"accept": JSON, **cookie(me.token)}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"me": {"id": me.record.user_id}}}

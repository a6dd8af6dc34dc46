"""Methods that must not change anything, and paths and methods no route takes: HEAD never runs a
mutation; an unknown path is a JSON 404, a method a route does not take a JSON 405 naming those it
does; a trailing slash is not redirected to another route."""

from __future__ import annotations

import json

import httpx
import pytest

from store.sessions import IssuedSession
from tests.app_client import JSON, ME, ROUTE, cookie, fresh_ip, media_type, signs_in
from tests.conftest import Users
from tests.http_errors import assert_rest_error

REVOKE_OTHERS = "mutation { revokeOtherSessions }"


async def two_sessions(users: Users) -> tuple[IssuedSession, IssuedSession]:
    """Two active sessions of a fresh user: the one making requests, and another."""
    user_id = users.new_id()
    return (
        await users.session(user_id, ip=fresh_ip()),
        await users.session(user_id, ip=fresh_ip()),
    )


# -- HEAD ------------------------------------------------------------------------------------------


async def test_head_with_a_mutation_body_changes_nothing(
    client: httpx.AsyncClient, users: Users
) -> None:
    current, other = await two_sessions(users)

    response = await client.request(
        "HEAD",
        "/graphql",
        content=json.dumps({"query": REVOKE_OTHERS}),
        headers={"content-type": JSON, "accept": JSON, **cookie(current.token)},
    )
    assert not 200 <= response.status_code < 300, response.status_code
    assert await signs_in(client, other.token)
    assert await signs_in(client, current.token)


async def test_head_with_a_mutation_in_the_query_string_is_405(
    client: httpx.AsyncClient, users: Users
) -> None:
    current, other = await two_sessions(users)

    response = await client.head(
        "/graphql", params={"query": REVOKE_OTHERS}, headers=cookie(current.token)
    )
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert await signs_in(client, other.token)


async def test_unknown_path_is_404_json_no_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing-here")
    assert response.status_code == 404
    assert media_type(response) == JSON
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]
    assert response.headers["cache-control"] == "no-store"
    assert_rest_error(response, 404, "not_found")


async def test_put_on_graphql_is_405_json_no_store_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": ME})
    assert response.status_code == 405
    assert media_type(response) == JSON
    # GraphQL's shape, as every HTTP-level error of /graphql (a GET mutation's 405 too).
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["cache-control"] == "no-store"
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed


async def test_sessions_collection_405_names_both_of_its_methods(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(ROUTE)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed
    assert_rest_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_trailing_slash_is_not_redirected_to_another_route(
    client: httpx.AsyncClient, users: Users, method: str
) -> None:
    """`DELETE /v1/users/me/sessions/` (an id left empty) must not turn into "revoke all
    others" by way of a redirect that a client follows with the same method."""
    me, other = await two_sessions(users)
    response = await client.request(method, f"{ROUTE}/", headers=cookie(me.token))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["cache-control"] == "no-store"
    assert_rest_error(response, 404, "not_found")
    assert await users.resources.store.authenticate(other.token) is not None

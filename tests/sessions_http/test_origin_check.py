"""Forged cross-site requests: a page on another site, riding the user's cookie, cannot revoke
sessions, whatever it tries (Origin, no Origin, simple bodies, GET); the portal named in
ALLOWED_ORIGINS, the service's own pages and non-browser clients can.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import IssuedSession
from tests.app_client import ROUTE, cookie, fresh_ip, signs_in
from tests.conftest import Users
from tests.http_errors import assert_graphql_http_error, assert_rest_error
from tests.servers import serve

PORTAL = "https://portal.example"
EVIL = "https://evil.example"
JSON_HEADERS = {"content-type": "application/json", "accept": "application/graphql-response+json"}
REVOKE_ONE = "mutation Revoke($id: ID!) { revokeSession(id: $id) }"
REVOKE_OTHERS = "mutation { revokeOtherSessions }"

# What a browser sends on a cross-site request that a page on another site makes.
FORGED = {
    "evil origin": {"origin": EVIL},
    "null origin": {"origin": "null"},
    "no origin, cross-site fetch": {"sec-fetch-site": "cross-site"},
    "look-alike origin": {"origin": "https://portal.example.evil.example"},
    "allowed host, other scheme": {"origin": "http://portal.example"},
    "unparseable origin": {"origin": "http://["},
}


@pytest.fixture(scope="module")
def portal_app(base_settings: Settings, database: str, redis_keyspace: str) -> Iterator[str]:
    """The app with ALLOWED_ORIGINS=https://portal.example."""
    with serve(base_settings.model_copy(update={"allowed_origins": [PORTAL]})) as url:
        yield url


@pytest.fixture
async def portal(portal_app: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=portal_app, timeout=20) as c:
        yield c


async def two_sessions(users: Users) -> tuple[IssuedSession, IssuedSession]:
    """A user's current session (the cookie) and another active session of theirs."""
    uid = users.new_id()
    other = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(hours=1))
    current = await users.session(uid, ip=fresh_ip())
    return current, other


async def still_active(
    client: httpx.AsyncClient, current: IssuedSession, other: IssuedSession
) -> None:
    """Nothing was revoked: both sessions still sign in, and the user still has both."""
    for session in (current, other):
        response = await client.get(ROUTE, headers=cookie(session.token))
        assert response.status_code == 200, response.text
        suffixes = {s["token_suffix"] for s in response.json()["sessions"]}
        assert suffixes == {current.record.token_suffix, other.record.token_suffix}


async def revoked(client: httpx.AsyncClient, other: IssuedSession) -> None:
    response = await client.get(ROUTE, headers=cookie(other.token))
    assert response.status_code == 401, response.text
    assert_rest_error(response, 401, "unauthenticated")


def mutation_body(mutation: str, other: IssuedSession) -> dict[str, Any]:
    if mutation == REVOKE_ONE:
        return {"query": REVOKE_ONE, "variables": {"id": other.record.id}}
    return {"query": REVOKE_OTHERS}


def assert_forbidden_origin(response: httpx.Response) -> None:
    """403 in the path's own error shape: GraphQL's on /graphql, REST's elsewhere."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    if response.request.url.path == "/graphql":
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN_ORIGIN"
        assert_graphql_http_error(response, 403, "FORBIDDEN_ORIGIN")
    else:
        assert response.json()["error"]["code"] == "forbidden_origin"
        assert_rest_error(response, 403, "forbidden_origin")


# -- refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
@pytest.mark.parametrize("mutation", [REVOKE_ONE, REVOKE_OTHERS], ids=["one", "others"])
async def test_forged_graphql_mutation_is_refused_and_revokes_nothing(
    portal: httpx.AsyncClient, users: Users, forged: dict[str, str], mutation: str
) -> None:
    current, other = await two_sessions(users)
    response = await portal.post(
        "/graphql",
        json=mutation_body(mutation, other),
        headers={**JSON_HEADERS, **cookie(current.token), **forged},
    )
    assert_forbidden_origin(response)
    await still_active(portal, current, other)


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
@pytest.mark.parametrize("which", ["one", "others"])
async def test_forged_rest_delete_is_refused_and_revokes_nothing(
    portal: httpx.AsyncClient, users: Users, forged: dict[str, str], which: str
) -> None:
    current, other = await two_sessions(users)
    path = f"{ROUTE}/{other.record.id}" if which == "one" else ROUTE
    response = await portal.delete(path, headers={**cookie(current.token), **forged})
    assert_forbidden_origin(response)
    await still_active(portal, current, other)


@pytest.mark.parametrize("how", ["another port", "not a web scheme"])
async def test_an_origin_on_the_services_host_but_not_its_web_origin_is_refused(
    portal: httpx.AsyncClient, portal_app: str, users: Users, how: str
) -> None:
    current, other = await two_sessions(users)
    host = portal_app.split("://", 1)[1]
    origin = "http://127.0.0.1:1" if how == "another port" else f"chrome-extension://{host}"
    response = await portal.post(
        "/graphql",
        json=mutation_body(REVOKE_OTHERS, other),
        headers={**JSON_HEADERS, **cookie(current.token), "origin": origin},
    )
    assert_forbidden_origin(response)
    await still_active(portal, current, other)


# -- allowed --------------------------------------------------------------------------------------


def allowed_headers(kind: str, app_url: str) -> dict[str, str]:
    return {
        "portal": {"origin": PORTAL, "sec-fetch-site": "cross-site"},
        "own origin": {"origin": app_url, "sec-fetch-site": "same-origin"},
        "non-browser client": {},
    }[kind]


@pytest.mark.parametrize("kind", ["portal", "own origin", "non-browser client"])
async def test_graphql_revoke_is_accepted_from_allowed_origins_and_non_browsers(
    portal: httpx.AsyncClient, portal_app: str, users: Users, kind: str
) -> None:
    current, other = await two_sessions(users)
    response = await portal.post(
        "/graphql",
        json=mutation_body(REVOKE_ONE, other),
        headers={**JSON_HEADERS, **cookie(current.token), **allowed_headers(kind, portal_app)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"revokeSession": True}}
    await revoked(portal, other)
    assert await signs_in(portal, current.token)


@pytest.mark.parametrize("kind", ["portal", "own origin", "non-browser client"])
async def test_rest_deletes_are_accepted_from_allowed_origins_and_non_browsers(
    portal: httpx.AsyncClient, portal_app: str, users: Users, kind: str
) -> None:
    current, other = await two_sessions(users)
    headers = {**cookie(current.token), **allowed_headers(kind, portal_app)}
    one = await portal.delete(f"{ROUTE}/{other.record.id}", headers=headers)
    assert one.status_code == 204, one.text
    await revoked(portal, other)

    current, other = await two_sessions(users)
    headers = {**cookie(current.token), **allowed_headers(kind, portal_app)}
    others = await portal.delete(ROUTE, headers=headers)
    assert others.status_code == 200, others.text
    assert others.json() == {"count": 1}
    await revoked(portal, other)


async def test_the_portal_can_read_the_answer_with_credentials(
    portal: httpx.AsyncClient, users: Users
) -> None:
    current, other = await two_sessions(users)
    response = await portal.post(
        "/graphql",
        json=mutation_body(REVOKE_OTHERS, other),
        headers={**JSON_HEADERS, **cookie(current.token), "origin": PORTAL},
    )
    assert response.json() == {"data": {"revokeOtherSessions": 1}}
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert response.headers["access-control-allow-credentials"] == "true"


# -- bodies a browser sends cross-site without a preflight ----------------------------------------

SIMPLE_BODIES = {
    "text/plain JSON": {
        "content": json.dumps({"query": REVOKE_OTHERS}),
        "headers": {"content-type": "text/plain;charset=UTF-8"},
    },
    "urlencoded form": {"data": {"query": REVOKE_OTHERS}},
    "multipart form": {"files": {"query": (None, REVOKE_OTHERS)}},
}


@pytest.mark.parametrize("origin", [PORTAL, None], ids=["portal", "no origin"])
@pytest.mark.parametrize("body", SIMPLE_BODIES.values(), ids=SIMPLE_BODIES.keys())
async def test_simple_request_bodies_cannot_carry_a_mutation(
    portal: httpx.AsyncClient, users: Users, body: dict[str, Any], origin: str | None
) -> None:
    current, other = await two_sessions(users)
    headers = {"accept": "application/json", **cookie(current.token), **body.get("headers", {})}
    if origin is not None:
        headers["origin"] = origin
    kwargs = {k: v for k, v in body.items() if k != "headers"}
    request = portal.build_request("POST", "/graphql", headers=headers, **kwargs)
    # The body really is what its name says (httpx sets the form content types itself).
    assert not request.headers["content-type"].startswith("application/json")
    response = await portal.send(request)
    assert response.status_code == 415, response.text
    assert_graphql_http_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    await still_active(portal, current, other)


async def test_a_mutation_over_get_is_refused_with_405(
    portal: httpx.AsyncClient, users: Users
) -> None:
    current, other = await two_sessions(users)
    for query in (REVOKE_OTHERS, f'mutation {{ revokeSession(id: "{other.record.id}") }}'):
        response = await portal.get(
            "/graphql",
            params={"query": query},
            headers={"accept": "application/json", **cookie(current.token)},
        )
        assert response.status_code == 405, response.text
        assert "POST" in response.headers["allow"]
        assert_graphql_http_error(response, 405, "METHOD_NOT_ALLOWED")
    await still_active(portal, current, other)


# -- CORS -----------------------------------------------------------------------------------------


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }


async def test_preflight_from_the_portal_is_allowed_with_credentials(
    portal: httpx.AsyncClient,
) -> None:
    response = await portal.options("/graphql", headers=preflight_headers(PORTAL))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


async def test_preflight_from_another_site_is_not_allowed(portal: httpx.AsyncClient) -> None:
    response = await portal.options("/graphql", headers=preflight_headers(EVIL))
    assert response.status_code != 200
    assert "Disallowed CORS origin" in response.text, response.text
    assert response.headers.get("access-control-allow-origin") not in (EVIL, "*")


async def test_preflight_for_delete_from_another_site_is_not_allowed(
    portal: httpx.AsyncClient,
) -> None:
    headers = {"origin": EVIL, "access-control-request-method": "DELETE"}
    response = await portal.options(ROUTE, headers=headers)
    assert response.headers.get("access-control-allow-origin") not in (EVIL, "*")


# -- default settings: no allowed origins ---------------------------------------------------------


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
async def test_default_settings_refuse_cross_site_requests(
    client: httpx.AsyncClient, users: Users, forged: dict[str, str]
) -> None:
    current, other = await two_sessions(users)
    response = await client.post(
        "/graphql",
        json=mutation_body(REVOKE_ONE, other),
        headers={**JSON_HEADERS, **cookie(current.token), **forged},
    )
    assert_forbidden_origin(response)
    assert_forbidden_origin(await client.delete(ROUTE, headers={**cookie(current.token), **forged}))
    await still_active(client, current, other)


async def test_default_settings_refuse_the_portal_too(
    client: httpx.AsyncClient, users: Users
) -> None:
    current, other = await two_sessions(users)
    response = await client.delete(ROUTE, headers={**cookie(current.token), "origin": PORTAL})
    assert_forbidden_origin(response)
    await still_active(client, current, other)


async def test_default_settings_accept_the_services_own_origin(
    client: httpx.AsyncClient, server: str, users: Users
) -> None:
    current, other = await two_sessions(users)
    response = await client.post(
        "/graphql",
        json=mutation_body(REVOKE_ONE, other),
        headers={**JSON_HEADERS, **cookie(current.token), "origin": server},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"revokeSession": True}}
    await revoked(client, other)

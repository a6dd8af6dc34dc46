"""What the tests send as a client of the app: the session cookie, a fresh client address, GraphQL
requests, and the checks most answers get."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import httpx

from tests.http_errors import assert_rest_error

ROUTE = "/v1/users/me/sessions"
JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = "{ me { id } }"


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"psession={token}"}


def fresh_ip(first_octet: int = 45) -> str:
    """A random address (global for the default first octet), so tests never share geo cache
    entries."""
    b, c, d = secrets.randbelow(256), secrets.randbelow(256), 1 + secrets.randbelow(254)
    return f"{first_octet}.{b}.{c}.{d}"


def ts(text: str) -> datetime:
    """A timestamp as the API writes it (`...Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


def media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


async def post_graphql(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
    accept: str = GRAPHQL_RESPONSE,
) -> httpx.Response:
    headers = {"accept": accept, **(cookie(token) if token is not None else {})}
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await client.post("/graphql", json=body, headers=headers)


async def graphql_body(
    client: httpx.AsyncClient, query: str, *, token: str | None = None
) -> dict[str, Any]:
    """The body of a query answered with 200: its data and errors."""
    response = await post_graphql(client, query, token=token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def graphql_data(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `data` of a query that must succeed: status 200 and no errors."""
    response = await post_graphql(client, query, token=token, variables=variables)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def error_codes(body: dict[str, Any]) -> list[str | None]:
    """The `extensions.code` of each GraphQL error of a body."""
    return [(e.get("extensions") or {}).get("code") for e in body.get("errors", [])]


def assert_healthy(response: httpx.Response) -> None:
    """/healthz's answer: the process serves."""
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


def assert_ready(response: httpx.Response) -> None:
    """/readyz's answer when Postgres and Redis both answer."""
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "postgres": "ok", "redis": "ok"}


async def assert_still_serving(client: httpx.AsyncClient) -> None:
    """The app still answers /healthz and a plain query after whatever the test sent it."""
    assert_healthy(await client.get("/healthz"))
    for accept in (JSON, GRAPHQL_RESPONSE):
        response = await client.post("/graphql", json={"query": ME}, headers={"accept": accept})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"me": None}


async def rest_sessions(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """The REST page of the token's user, which must answer 200."""
    response = await client.get(ROUTE, headers=cookie(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signs_in(client: httpx.AsyncClient, token: str) -> bool:
    """Whether the token signs in: REST lists its sessions with it as the current one, or answers
    its 401."""
    response = await client.get(ROUTE, headers=cookie(token))
    if response.status_code == 401:
        assert_rest_error(response, 401, "unauthenticated")
        return False
    assert response.status_code == 200, response.text
    assert [s["is_current"] for s in response.json()["sessions"]].count(True) == 1
    return True

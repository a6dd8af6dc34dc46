"""/openapi.json tells the truth: real answers of every documented route, for each status a
client can bring about, have a documented status, a body that validates against the documented
schema, and the documented headers. /docs shows it, offline."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from sessions_config.resources import Resources
from store import admin
from tests.app_client import ROUTE, cookie
from tests.conftest import Users

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    assert doc["openapi"] == "3.1.0"
    return doc


def check(doc: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """The answer is one the document describes, exactly."""
    operation = doc["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    described = operation["responses"][status]
    for header in described.get("headers", {}):
        assert header.lower() in response.headers, f"{method} {path} {status}: no {header}"
        const = described["headers"][header]["schema"].get("const")
        if const is not None:
            assert response.headers[header.lower()] == const
    content = described.get("content")
    if content is None:
        assert response.content == b""
        return
    schema = {**content["application/json"]["schema"], "components": doc["components"]}
    Draft202012Validator(schema).validate(response.json())


def test_the_document_is_valid_json_schema_throughout() -> None:
    from sessions_http.openapi import document

    doc = document()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    json.dumps(doc)  # serialisable as it is served


async def test_the_v1_routes_answer_as_documented(
    client: httpx.AsyncClient, users: Users, document: dict[str, Any]
) -> None:
    user = users.new_id()
    me = await users.session(user, ip="81.2.69.142")
    other = await users.session(user, ip="10.0.0.1")  # a private address: geo null
    past = await users.session(user, ip="8.8.8.8")
    await users.resources.store.end(past.token)
    collection = "/v1/users/me/sessions"
    one = "/v1/users/me/sessions/{session_id}"
    calls: list[tuple[str, str, Callable[[], Awaitable[httpx.Response]]]] = [
        (collection, "GET", lambda: client.get(ROUTE, headers=cookie(me.token))),
        (
            collection,
            "GET",
            lambda: client.get(ROUTE, params={"limit": "x"}, headers=cookie(me.token)),
        ),
        (collection, "GET", lambda: client.get(ROUTE)),
        (one, "DELETE", lambda: client.delete(f"{ROUTE}/{me.record.id}", headers=cookie(me.token))),
        (one, "DELETE", lambda: client.delete(f"{ROUTE}/{UNKNOWN}", headers=cookie(me.token))),
        (
            one,
            "DELETE",
            lambda: client.delete(
                f"{ROUTE}/{other.record.id}",
                headers={**cookie(me.token), "origin": "https://evil.example"},
            ),
        ),
        (
            one,
            "DELETE",
            lambda: client.delete(f"{ROUTE}/{other.record.id}", headers=cookie(me.token)),
        ),
        (collection, "DELETE", lambda: client.delete(ROUTE, headers=cookie(me.token))),
        (collection, "PUT", lambda: client.put(ROUTE, headers=cookie(me.token))),
        ("/healthz", "GET", lambda: client.get("/healthz")),
        ("/readyz", "GET", lambda: client.get("/readyz")),
    ]
    seen = set()
    for path, method, call in calls:
        response = await call()
        documented_method = "get" if method == "PUT" else method  # a 405 is documented per path
        check(document, path, documented_method, response)
        seen.add((path, method, response.status_code))
    assert {s for _, _, s in seen} >= {200, 204, 400, 401, 403, 404, 405, 409}


async def test_the_admin_routes_answer_as_documented(
    client: httpx.AsyncClient, resources: Resources, users: Users, document: dict[str, Any]
) -> None:
    pool = resources.store.pool
    _, read = await admin.create_key(pool, name="openapi-read", scopes=["sessions:read"])
    _, write = await admin.create_key(
        pool, name="openapi-write", scopes=["sessions:read", "sessions:write"]
    )
    user = users.new_id()
    me = await users.session(user)
    past = await users.session(user, ip="8.8.8.8")
    await users.resources.store.end(past.token)

    def key(k: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {k}"}

    sessions = "/admin/v1/users/{user_id}/sessions"
    one = "/admin/v1/sessions/{session_id}"
    calls: list[tuple[str, str, Callable[[], Awaitable[httpx.Response]]]] = [
        (
            sessions,
            "GET",
            lambda: client.get(f"/admin/v1/users/{user}/sessions", headers=key(read)),
        ),
        (
            sessions,
            "GET",
            lambda: client.get(
                f"/admin/v1/users/{user}/sessions", params={"history_limit": "x"}, headers=key(read)
            ),
        ),
        (sessions, "GET", lambda: client.get(f"/admin/v1/users/{user}/sessions")),
        (
            sessions,
            "DELETE",
            lambda: client.delete(f"/admin/v1/users/{user}/sessions", headers=key(read)),
        ),
        (one, "GET", lambda: client.get(f"/admin/v1/sessions/{past.record.id}", headers=key(read))),
        (one, "GET", lambda: client.get(f"/admin/v1/sessions/{UNKNOWN}", headers=key(read))),
        (
            one,
            "DELETE",
            lambda: client.delete(f"/admin/v1/sessions/{me.record.id}", headers=key(write)),
        ),
        (
            "/admin/v1/audit",
            "GET",
            lambda: client.get("/admin/v1/audit", params={"user_id": user}, headers=key(read)),
        ),
        (
            sessions,
            "DELETE",
            lambda: client.delete(f"/admin/v1/users/{user}/sessions", headers=key(write)),
        ),
    ]
    for path, method, call in calls:
        check(document, path, method, await call())

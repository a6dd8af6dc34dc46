"""Request ids (X-Request-ID: the client's sane one, or a new one; echoed, in GraphQL errors, in
the log lines of the request), the access line, and LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from sessions_config.settings import Settings
from tests.app_client import ROUTE, cookie
from tests.conftest import Users
from tests.servers import serve_process


async def test_a_sane_request_id_is_kept_and_any_other_replaced(client: httpx.AsyncClient) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "portal-7f3a:12"})
    assert kept.headers["x-request-id"] == "portal-7f3a:12"
    for bad in ("has space", "x" * 129, "é"):
        made = await client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8")})
        assert made.headers["x-request-id"] not in (bad, "")
    a, b = (await client.get("/healthz"), await client.get("/healthz"))
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_graphql_errors_carry_the_request_id(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"X-Request-ID": "from-the-page"}
    )
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED", "requestId": "from-the-page"}


async def test_the_access_line_names_the_route_not_the_values(
    client: httpx.AsyncClient, users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    me = await users.session(users.new_id())
    with caplog.at_level(logging.INFO, logger="sessions_api.access"):
        await client.delete(
            f"{ROUTE}/00000000-0000-4000-8000-000000000000",
            headers={**cookie(me.token), "X-Request-ID": "req-1"},
        )
    [line] = [r for r in caplog.records if r.name == "sessions_api.access"]
    text = line.getMessage()
    assert text.startswith("DELETE /v1/users/me/sessions/{session_id} 404 ")
    assert line.request_id == "req-1"  # type: ignore[attr-defined]
    assert me.token not in text and "00000000-0000" not in text


# One process, and workers (processes of their own, started afresh: their logging too).
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "workers"])
async def test_json_logs_are_one_object_per_line(
    settings: Settings, users: Users, tmp_path: Path, workers: list[str]
) -> None:
    me = await users.session(users.new_id())
    log = tmp_path / "serve.log"
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    with serve_process(settings, log, *workers, env=env) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.get(ROUTE, headers={**cookie(me.token), "X-Request-ID": "json-1"})
            assert answer.status_code == 200
    lines = [line for line in log.read_text("utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r["logger"] == "sessions_api.access"]
    assert any(r["request_id"] == "json-1" and "200" in r["message"] for r in access), access
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    assert me.token not in log.read_text("utf-8")


async def test_every_answer_carries_one_request_id(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/v1/users/me/sessions", "/admin/v1/audit", "/nowhere", "/"):
        answer = await client.get(path, headers={"X-Request-ID": "one-id"})
        assert answer.headers.get_list("x-request-id") == ["one-id"], path

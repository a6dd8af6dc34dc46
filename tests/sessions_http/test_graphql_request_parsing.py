"""Robustness at the edges: other writers' data, reused tokens, a failing Redis, a stuck
Postgres, hostile request bodies and headers, HTTP methods that must not change anything, and
CLI arguments out of range. Everything runs against the real Postgres, Redis and app."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import redis.exceptions
from redis.asyncio import Redis

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.keys import Keys
from store.sessions import NewSession, SessionStore
from store.tokens import new_token
from tests.conftest import Users
from tests.sessions_ops.test_cli import (
    assert_usage_error,
    create,
    import_row,
    iso,
    now,
    rest_sessions,
    run_cli,
    run_create,
)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
ME = "{ me { id } }"
REVOKE_OTHERS = "mutation { revokeOtherSessions }"
HISTORY_PAGE = """
query ($after: String) {
  me { history(first: 2, after: $after) {
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  } }
}
"""


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"psession={token}"}


def random_ip() -> str:
    return f"11.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


async def assert_still_serving(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": ME}, headers={"accept": JSON})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"me": None}


async def signs_in(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get("/v1/users/me/sessions", headers=cookie(token))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# -- 1. history pages over sub-second times written by another writer --------------------------


async def test_history_pages_cover_sub_second_rows_of_another_writer_exactly_once(
    client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    """Another writer may store created_at with microseconds. Walking `history(first: 2)` with
    each page's endCursor must yield every past session once, newest first, even when a page
    boundary falls between rows of the same second."""
    user_id = users.new_id()
    current = await users.session(user_id, ip=random_ip())
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
                random_ip(),
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

    seen: list[str] = []
    after: str | None = None
    for _ in range(len(rows) + 2):  # a bound: a cursor that never advances must not loop forever
        response = await client.post(
            "/graphql",
            json={"query": HISTORY_PAGE, "variables": {"after": after}},
            headers={"accept": GRAPHQL_RESPONSE, **cookie(current.token)},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        page = body["data"]["me"]["history"]
        assert len(page["edges"]) <= 2
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    assert seen == expected


# -- 2. import: tokens already in use -------------------------------------------------------------


async def test_import_stops_at_a_row_whose_token_is_already_stored(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    owner = users.new_id()
    taken = new_token()
    await users.session(owner, ip=random_ip(), user_agent="the owner", token=taken)

    user_id = users.new_id()
    rows = [import_row(user_id, 0), import_row(user_id, 1, token=taken), import_row(user_id, 2)]
    result = await run_cli(
        base_settings, "sessions", "import", stdin="".join(json.dumps(r) + "\n" for r in rows)
    )

    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert re.search(r"\bline 2\b", result.stderr), result.stderr
    assert "already in use" in result.stderr
    [printed] = [json.loads(line) for line in result.lines]
    assert printed["token"] != taken
    record = await resources.store.authenticate(printed["token"])
    assert record is not None and record.user_agent == "row-0"
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert [r.user_agent for r in active] == ["row-0"]
    # The stored session keeps its owner.
    kept = await resources.store.authenticate(taken)
    assert kept is not None and (kept.user_id, kept.user_agent) == (owner, "the owner")


async def test_import_stops_at_a_token_that_repeats_an_earlier_line(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    token = new_token()
    rows = [
        import_row(user_id, 0),
        import_row(user_id, 1, token=token),
        import_row(user_id, 2),
        import_row(user_id, 3, token=token),
        import_row(user_id, 4),
    ]
    result = await run_cli(
        base_settings, "sessions", "import", stdin="".join(json.dumps(r) + "\n" for r in rows)
    )

    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert re.search(r"\bline 4\b", result.stderr), result.stderr
    assert re.search(r"repeats line 2\b", result.stderr), result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 3
    assert printed[1]["token"] == token
    for i, out in enumerate(printed):
        record = await resources.store.authenticate(out["token"])
        assert record is not None and record.user_agent == f"row-{i}"
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1", "row-2"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        pytest.param("user_agent", "Mozilla\x00/5.0", "NUL", id="nul-in-user-agent"),
        # Year 1 at +14:00 is in year 0 in UTC, outside the calendar.
        pytest.param("created_at", "0001-01-01T00:00:00+14:00", "created_at", id="before-utc"),
    ],
)
async def test_import_stops_cleanly_at_a_value_it_cannot_store(
    base_settings: Settings, resources: Resources, users: Users, field: str, value: str, says: str
) -> None:
    user_id = users.new_id()
    rows = [import_row(user_id, i) for i in range(4)]
    rows[2][field] = value
    result = await run_cli(
        base_settings, "sessions", "import", stdin="".join(json.dumps(r) + "\n" for r in rows)
    )

    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert re.search(r"\bline 3\b", result.stderr), result.stderr
    assert says in result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 2
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1"]


# -- 3. a failed Redis write leaves no Postgres row ---------------------------------------------


async def test_create_with_redis_down_leaves_no_postgres_row(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """The store writes Postgres first, then Redis; when Redis fails, the rows are deleted again.

    Redis is made to fail by a client pointing to a closed port, so the pipeline fails as a
    whole. A pipeline that fails half-way (some keys written) is hard to provoke from a test;
    the same compensation path handles it, and this case is the one we can reproduce.
    """
    user_id = users.new_id()
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    store = SessionStore(resources.store.pool, dead, Keys(base_settings.redis_key_prefix))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.create(NewSession(user_id=user_id, ip=random_ip(), user_agent="lost"))
    finally:
        await dead.aclose()

    count = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    assert count == 0
    assert await resources.store.list_active_for_user(user_id=user_id) == []
    # The same user can still sign in normally afterwards.
    created = await users.session(user_id, ip=random_ip())
    assert await resources.store.authenticate(created.token) is not None


# -- 4. HEAD never runs a mutation -----------------------------------------------------------------


async def test_head_with_a_mutation_body_changes_nothing(
    client: httpx.AsyncClient, users: Users
) -> None:
    user_id = users.new_id()
    current = await users.session(user_id, ip=random_ip())
    other = await users.session(user_id, ip=random_ip())

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
    user_id = users.new_id()
    current = await users.session(user_id, ip=random_ip())
    other = await users.session(user_id, ip=random_ip())

    response = await client.head(
        "/graphql", params={"query": REVOKE_OTHERS}, headers=cookie(current.token)
    )
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert await signs_in(client, other.token)


# -- 5. a stuck Postgres answers 503, not a hang ------------------------------------------------


async def test_locked_sessions_table_answers_503_within_the_storage_timeout(
    base_settings: Settings, client: httpx.AsyncClient, users: Users
) -> None:
    """STORAGE_TIMEOUT bounds every Postgres command: a request waiting on a lock gets a JSON
    503 (the bound below is "no hang", not a speed check), and the next one works again."""
    created = await users.session(users.new_id(), ip=random_ip())
    locker = await asyncpg.connect(base_settings.database_url)
    try:
        await locker.execute("SET lock_timeout = '10s'")
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=20) as patient:
            response = await patient.get("/v1/users/me/sessions", headers=cookie(created.token))
        assert response.status_code == 503, response.text
        assert media_type(response) == JSON
        assert response.json()["error"]["code"] == "unavailable"
        assert response.headers["cache-control"] == "no-store"
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()

    response = await client.get("/v1/users/me/sessions", headers=cookie(created.token))
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 1


# -- 6. deeply nested JSON -----------------------------------------------------------------------


# Under the 64 KiB body limit, so the nesting itself is what must be refused (not the size).
DEEP = 30_000  # 60 KB when balanced


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * DEEP, id="body-opening-brackets"),
        pytest.param("[" * DEEP + "]" * DEEP, id="body-balanced"),
        pytest.param(
            '{"query": "{ me { id } }", "variables": {"a": ' + "[" * DEEP + "]" * DEEP + "}}",
            id="variables-object",
        ),
        pytest.param(
            json.dumps({"query": ME, "variables": "[" * DEEP + "]" * DEEP}),
            id="variables-string",
        ),
    ],
)
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, body: str) -> None:
    assert len(body.encode()) <= 64 * 1024
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400, response.text
    assert media_type(response) == JSON
    assert response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_deeply_nested_variables_on_get_are_400(client: httpx.AsyncClient) -> None:
    # Deeper than Python's recursion limit (1000); short enough for a URL (HTTP_MAX_URL_BYTES).
    depth = 1200
    response = await client.get(
        "/graphql",
        params={"query": ME, "variables": "[" * depth + "]" * depth},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_nested_variables_that_parse_are_refused_by_graphql_not_crashing(
    client: httpx.AsyncClient,
) -> None:
    """Nesting that JSON accepts, given to a variable of a scalar type: a GraphQL error."""
    depth = 900
    query = "query ($after: String) { me { history(after: $after) { pageInfo { hasNextPage } } } }"
    body = json.dumps({"query": query, "variables": {"after": "x"}}).replace(
        '"x"', "[" * depth + "]" * depth
    )
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"]
    await assert_still_serving(client)


# -- 7. Accept q-values -------------------------------------------------------------------------


async def test_accept_quality_values_choose_the_media_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": ME},
        headers={"accept": f"{JSON};q=1, {GRAPHQL_RESPONSE};q=0.1"},
    )
    assert response.status_code == 200
    assert media_type(response) == JSON

    response = await client.post(
        "/graphql", json={"query": ME}, headers={"accept": f"{GRAPHQL_RESPONSE};q=0"}
    )
    assert response.status_code == 406
    assert response.json()["errors"]


# -- 8. unknown paths and methods ------------------------------------------------------------------


async def test_unknown_path_is_404_json_no_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing-here")
    assert response.status_code == 404
    assert media_type(response) == JSON
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]
    assert response.headers["cache-control"] == "no-store"


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
    response = await client.put("/v1/users/me/sessions")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_trailing_slash_is_not_redirected_to_another_route(
    client: httpx.AsyncClient, users: Users, method: str
) -> None:
    """`DELETE /v1/users/me/sessions/` (an id left empty) must not turn into "revoke all
    others" by way of a redirect that a client follows with the same method."""
    me = await users.session(users.new_id(), ip=random_ip())
    other = await users.session(me.record.user_id, ip=random_ip())
    response = await client.request(
        method, "/v1/users/me/sessions/", headers={"cookie": f"psession={me.token}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["cache-control"] == "no-store"
    assert await users.resources.store.authenticate(other.token) is not None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"query": "query A { me { id } }", "operationName": "\\ud800"}', id="name"),
        pytest.param(b'{"query": "{ me { id } }", "variables": {"x": "\\udfff"}}', id="variables"),
        pytest.param(b'{"query": "{ me(x: \\"\\ud800\\") { id } }"}', id="query"),
    ],
)
async def test_lone_surrogates_are_a_bad_request_not_a_500(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": JSON}
    )
    assert response.status_code == 400, response.text
    assert "Unicode" in response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_an_int_literal_too_long_to_read_is_the_clients_mistake(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    query = "{ me { history(first: " + "9" * 5000 + ") { edges { cursor } } } }"
    with caplog.at_level(logging.ERROR):
        response = await client.post(
            "/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE}
        )
    assert response.status_code == 400
    message = response.json()["errors"][0]["message"]
    assert message != "Unexpected error." and "Int" in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 9. CLI arguments out of range ---------------------------------------------------------------


async def test_create_with_a_huge_ttl_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_cli(
        base_settings,
        "sessions", "create", "--user-id", user_id, "--ip", random_ip(),
        "--ttl", "99999999999999",
    )  # fmt: skip
    assert_usage_error(result, "--ttl")
    assert await resources.store.list_active_for_user(user_id=user_id) == []


async def test_create_at_the_end_of_time_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_cli(
        base_settings,
        "sessions", "create", "--user-id", user_id, "--ip", random_ip(),
        "--created-at", "9999-12-31T23:59:59Z",
    )  # fmt: skip
    assert_usage_error(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    count = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    assert count == 0


async def test_create_long_ago_without_a_lifetime_is_active_for_30_days_from_now(
    base_settings: Settings, client: httpx.AsyncClient, users: Users
) -> None:
    created_at = now() - timedelta(days=40)
    before = now()
    created = await create(base_settings, users.new_id(), "--created-at", iso(created_at))
    after = now()
    body = await rest_sessions(client, created["token"])
    [session] = body["sessions"]
    assert session["is_current"] is True
    assert session["created_at"] == iso(created_at)
    expires_at = datetime.fromisoformat(session["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(days=30) <= expires_at <= after + timedelta(days=30)
    assert body["history"] == []


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_create_at_a_time_outside_the_utc_calendar_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users, moment: str
) -> None:
    """Valid ISO 8601, but out of range once moved to UTC: a clean message, no traceback."""
    user_id = users.new_id()
    result = await run_cli(
        base_settings,
        "sessions", "create", "--user-id", user_id, "--ip", random_ip(), "--created-at", moment,
    )  # fmt: skip
    assert_usage_error(result, "--created-at")
    assert await resources.store.list_active_for_user(user_id=user_id) == []


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
async def test_create_before_1970_is_a_usage_error(
    base_settings: Settings, users: Users, resources: Resources, when: str
) -> None:
    """Postgres would keep year 1 as -infinity (asyncpg's reading of the minimum datetime), so
    times before 1970 are refused rather than stored as something else."""
    user_id = users.new_id()
    result = await run_create(base_settings, user_id, "--created-at", when)
    assert_usage_error(result, "created_at", "1970")
    assert await resources.store.list_active_for_user(user_id=user_id) == []

"""Security properties: users are isolated from each other, raw tokens are never stored or logged,
and the store's tokens are URL-safe with at least 128 bits of randomness."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
from datetime import timedelta

import httpx
import pytest

from sessions_config.resources import Resources
from store.models import utcnow
from store.sessions import IssuedSession, NewSession
from tests.conftest import Users

ROUTE = "/v1/users/me/sessions"
ME_QUERY = "{ me { id sessions { id tokenSuffix } history { edges { node { id } } } } }"
GRAPHQL_HEADERS = {
    "content-type": "application/json",
    "accept": "application/graphql-response+json",
}


def fresh_ip() -> str:
    return f"45.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"psession={token}"}


async def graphql(client: httpx.AsyncClient, token: str, query: str = ME_QUERY) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query}, headers={**GRAPHQL_HEADERS, **cookie(token)}
    )


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


# -- isolation ----------------------------------------------------------------------------------


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

            response = await graphql(client, token)
            assert response.status_code == 200, response.text
            me = response.json()["data"]["me"]
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
    assert (await client.get(ROUTE, headers=cookie(a_active[0].token))).status_code == 401
    for created in (a_active[1], *b_active):
        assert (await client.get(ROUTE, headers=cookie(created.token))).status_code == 200


# -- the raw token is stored nowhere ------------------------------------------------------------


async def dump_postgres(resources: Resources) -> str:
    """Every row of every table of the run's database, as JSON text."""
    async with resources.store.pool.acquire() as conn:
        tables = await conn.fetch(
            """SELECT table_schema, table_name FROM information_schema.tables
                WHERE table_type = 'BASE TABLE'
                  AND table_schema NOT IN ('pg_catalog', 'information_schema')"""
        )
        assert any(t["table_name"] == "sessions" for t in tables)
        texts = []
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            rows = await conn.fetch(f"SELECT row_to_json(t)::text AS j FROM {name} t")  # noqa: S608
            texts.extend(r["j"] for r in rows)
    return "\n".join(texts)


async def dump_redis(resources: Resources) -> str:
    """Every key under the run's prefix, with its value, whatever its type."""
    redis = resources.store.redis
    parts: list[bytes] = []
    async for key in redis.scan_iter(match=f"{resources.store.keys.prefix}*", count=1000):
        parts.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value = await redis.get(key)
            parts.append(value or b"")
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():  # type: ignore[misc]
                parts += [field, value]
        elif kind == "zset":
            parts += await redis.zrange(key, 0, -1)
        elif kind == "set":
            parts += list(await redis.smembers(key))  # type: ignore[misc]
        elif kind == "list":
            parts += await redis.lrange(key, 0, -1)  # type: ignore[misc]
        elif kind != "none":  # "none": expired between SCAN and TYPE
            pytest.fail(f"unexpected Redis type {kind} at {key!r}")
    return b"\n".join(parts).decode("utf-8", "replace")


async def test_raw_tokens_are_stored_nowhere(users: Users, resources: Resources) -> None:
    uid = users.new_id()
    active = [await users.session(uid, ip=fresh_ip(), user_agent=f"a{n}") for n in range(3)]
    past = await users.session(
        uid,
        ip=fresh_ip(),
        created_at=utcnow() - timedelta(days=2),
        ended_at=utcnow() - timedelta(days=1),
    )
    ended = active.pop()
    await resources.store.end(ended.token)

    postgres = await dump_postgres(resources)
    redis = await dump_redis(resources)
    for created in [*active, past, ended]:
        token, token_hash = created.token, hashlib.sha256(created.token.encode()).hexdigest()
        assert token not in postgres
        assert token not in redis
        # What is stored instead: the hash (so the scan did reach this session's data).
        assert token_hash in postgres
    for created in active:
        assert hashlib.sha256(created.token.encode()).hexdigest() in redis
    # An ended session is gone from Redis altogether.
    assert ended.record.token_hash not in redis


# -- tokens are never logged --------------------------------------------------------------------


async def test_tokens_never_reach_the_logs(
    client: httpx.AsyncClient,
    users: Users,
    resources: Resources,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = users.new_id()
    current = await users.session(uid, ip=fresh_ip())
    ended = await users.session(uid, ip=fresh_ip())
    unknown = secrets.token_urlsafe(32)
    # A damaged session in the user's index makes the server (in its own thread) log a warning,
    # which shows that the server's records are captured here.
    redis, keys = resources.store.redis, resources.store.keys
    damaged = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    expires = int((utcnow() + timedelta(hours=1)).timestamp())
    await redis.hset(keys.session(damaged), mapping={"id": "x", "user_id": uid})  # type: ignore[misc]
    await redis.expireat(keys.session(damaged), expires)
    await redis.zadd(keys.user_sessions(uid), {damaged: expires})

    with caplog.at_level(logging.DEBUG):
        await resources.store.end(ended.token)
        assert (await client.get(ROUTE, headers=cookie(current.token))).status_code == 200
        assert (await graphql(client, current.token)).status_code == 200
        assert (await client.get(ROUTE, headers=cookie(ended.token))).status_code == 401
        assert (await client.get(ROUTE, headers=cookie(unknown))).status_code == 401
        bad_query = await graphql(client, current.token, "{ me { nope } }")
        assert bad_query.status_code == 400
        unauthenticated = await graphql(client, unknown)
        assert unauthenticated.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    test_thread = threading.get_ident()
    assert any(r.name == "store.active" and r.thread != test_thread for r in caplog.records), (
        "the server's log records were not captured, so this test would prove nothing"
    )
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for token in (current.token, ended.token, unknown):
        assert token not in everything


# -- token quality ------------------------------------------------------------------------------

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


async def test_store_tokens_are_url_safe_with_at_least_128_bits(resources: Resources) -> None:
    uid = f"token-quality-{secrets.token_hex(6)}"
    created = await resources.store.create_many(
        [NewSession(user_id=uid, ip=fresh_ip(), user_agent="t") for _ in range(500)]
    )
    tokens = [c.token for c in created]
    assert len(set(tokens)) == len(tokens)
    for c in created:
        assert URL_SAFE.match(c.token), c.token
        assert len(c.token) >= 22
        # base64url of at least 16 random bytes.
        assert len(base64.urlsafe_b64decode(c.token + "=" * (-len(c.token) % 4))) >= 16
        assert c.record.token_suffix == c.token[-6:]
        assert c.record.token_hash == hashlib.sha256(c.token.encode()).hexdigest()
    # Not one fixed prefix with a counter: the leading characters vary as much as the rest.
    assert len({t[:8] for t in tokens}) == len(tokens)
    await resources.store.delete_user(user_id=uid)

"""Session tokens: the raw token is stored nowhere (Postgres and Redis hold its hash) and never
reaches the logs, and the store's tokens are URL-safe with at least 128 bits of randomness."""

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
from store.sessions import NewSession
from tests.app_client import ROUTE, cookie, fresh_ip, post_graphql
from tests.conftest import Users
from tests.http_errors import assert_rest_error

ME_QUERY = "{ me { id sessions { id tokenSuffix } history { edges { node { id } } } } }"


# -- the raw token is stored nowhere ---------------------------------------------------------------


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


# -- tokens are never logged -----------------------------------------------------------------------


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
    await redis.hset(keys.session(uid, damaged), mapping={"id": "x", "user_id": uid})  # type: ignore[misc]
    await redis.expireat(keys.session(uid, damaged), expires)
    await redis.zadd(keys.user_sessions(uid), {damaged: expires})

    with caplog.at_level(logging.DEBUG):
        await resources.store.end(ended.token)
        signed_in = await client.get(ROUTE, headers=cookie(current.token))
        assert signed_in.status_code == 200
        assert [s["is_current"] for s in signed_in.json()["sessions"]] == [True]
        me = await post_graphql(client, ME_QUERY, token=current.token)
        assert me.status_code == 200
        assert me.json()["data"]["me"]["id"] == uid
        for token in (ended.token, unknown):
            response = await client.get(ROUTE, headers=cookie(token))
            assert_rest_error(response, 401, "unauthenticated")
        bad_query = await post_graphql(client, "{ me { nope } }", token=current.token)
        assert bad_query.status_code == 400
        assert "nope" in bad_query.json()["errors"][0]["message"]
        unauthenticated = await post_graphql(client, ME_QUERY, token=unknown)
        assert unauthenticated.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    test_thread = threading.get_ident()
    assert any(r.name == "store.active" and r.thread != test_thread for r in caplog.records), (
        "the server's log records were not captured, so this test would prove nothing"
    )
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for token in (current.token, ended.token, unknown):
        assert token not in everything


# -- token quality ---------------------------------------------------------------------------------

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

"""`sessions-api migrate-redis`: sessions a Redis holds in the layout before hash tags move to
the current one whole (expiry and end marks included), sign in again, and are never left in both
layouts; sessions Postgres says have ended are ended on the way."""

from __future__ import annotations

import json

import httpx

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import format_timestamp, utcnow
from store.sessions import IssuedSession
from tests.app_client import ROUTE, cookie
from tests.cli_runner import run_cli
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.redis_cluster import RedisCluster


async def to_old_layout(resources: Resources, issued: IssuedSession) -> None:
    """Rewrites a session as the previous version wrote it, and removes it from the current
    layout."""
    redis, keys, record = resources.store.redis, resources.store.keys, issued.record
    new = keys.session(record.user_id, record.token_hash)
    fields = await redis.hgetall(new)
    expires = await redis.expiretime(new)
    assert fields and expires > 0
    old = keys.legacy_session(record.token_hash)
    await redis.hset(old, mapping=fields)
    await redis.expireat(old, expires)
    await redis.zadd(keys.legacy_user_sessions(record.user_id), {record.token_hash: expires})
    await redis.expireat(keys.legacy_user_sessions(record.user_id), expires)
    await redis.delete(new, keys.token(record.token_hash))
    await redis.zrem(keys.user_sessions(record.user_id), record.token_hash)


async def test_migrate_redis_moves_old_sessions_and_ends_what_postgres_ended(
    base_settings: Settings, client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    store, redis, keys = resources.store, resources.store.redis, resources.store.keys
    user, other = users.new_id(), users.new_id()
    kept = await users.session(user, ip="81.2.69.142")
    marked = await users.session(user, ip="8.8.8.8")
    ended = await users.session(user, ip="1.1.1.1")
    theirs = await users.session(other, ip="9.9.9.9")
    moved = (kept, marked, ended, theirs)
    expiry = {}
    for issued in moved:
        record = issued.record
        expiry[record.token_hash] = await redis.expiretime(
            keys.session(record.user_id, record.token_hash)
        )
    for issued in moved:
        await to_old_layout(resources, issued)
    # An end the previous version half-did: marked in Redis, not recorded in Postgres yet.
    await redis.hset(
        keys.legacy_session(marked.record.token_hash),
        mapping={"ended_at": format_timestamp(utcnow()), "end_reason": "logout"},
    )
    # An end recorded in Postgres whose Redis entry an older writer never removed.
    await store.pool.execute(
        "UPDATE sessions SET ended_at = now(), end_reason = 'logout' WHERE token_hash = $1",
        ended.record.token_hash,
    )
    assert_rest_error(await client.get(ROUTE, headers=cookie(kept.token)), 401, "unauthenticated")

    result = await run_cli(base_settings, "migrate-redis")
    assert result.code == 0, result
    summary = json.loads(result.lines[-1])
    assert summary == {"moved": 4, "ended": 1, "skipped": 0}

    page = await client.get(ROUTE, headers=cookie(kept.token))
    assert page.status_code == 200, page.text
    assert [s["token_suffix"] for s in page.json()["sessions"]] == [kept.record.token_suffix]
    # The half-done end is finished by that look (at the user's next look, it is history).
    page = await client.get(ROUTE, headers=cookie(kept.token))
    body = page.json()
    assert [s["token_suffix"] for s in body["sessions"]] == [kept.record.token_suffix]
    assert {h["token_suffix"] for h in body["history"]} == {
        marked.record.token_suffix,
        ended.record.token_suffix,
    }
    for gone in (marked, ended):
        assert_rest_error(
            await client.get(ROUTE, headers=cookie(gone.token)), 401, "unauthenticated"
        )
    other_page = await client.get(ROUTE, headers=cookie(theirs.token))
    assert [s["token_suffix"] for s in other_page.json()["sessions"]] == [
        theirs.record.token_suffix
    ]
    # Expiry kept to the second, and nothing left in the old layout.
    for issued in (kept, theirs):
        record = issued.record
        assert (
            await redis.expiretime(keys.session(record.user_id, record.token_hash))
            == (expiry[record.token_hash])
        )
        assert await redis.expiretime(keys.token(record.token_hash)) == expiry[record.token_hash]
    for issued in moved:
        assert not await redis.exists(keys.legacy_session(issued.record.token_hash))
    assert not await redis.exists(keys.legacy_user_sessions(user))
    assert not await redis.exists(keys.legacy_user_sessions(other))

    again = await run_cli(base_settings, "migrate-redis")
    assert again.code == 0, again
    assert json.loads(again.lines[-1]) == {"moved": 0, "ended": 0, "skipped": 0}


async def test_migrate_redis_leaves_an_entry_without_expiry_and_names_it(
    base_settings: Settings, client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    redis, keys = resources.store.redis, resources.store.keys
    issued = await users.session(users.new_id())
    await to_old_layout(resources, issued)
    old = keys.legacy_session(issued.record.token_hash)
    await redis.persist(old)
    try:
        result = await run_cli(base_settings, "migrate-redis")
        assert result.code == 0, result
        assert json.loads(result.lines[-1]) == {"moved": 0, "ended": 0, "skipped": 1}
        assert issued.record.token_hash in result.stderr
        assert await redis.exists(old)
        assert_rest_error(
            await client.get(ROUTE, headers=cookie(issued.token)), 401, "unauthenticated"
        )
    finally:
        await redis.delete(old)  # other tests of this run count what the old layout holds


async def test_migrate_redis_refuses_a_cluster(
    base_settings: Settings, redis_cluster: RedisCluster
) -> None:
    """The old layout never lived on a cluster (its writes spanned slots): nothing to move."""
    on_cluster = base_settings.model_copy(
        update={"redis_url": redis_cluster.url, "redis_mode": "cluster"}
    )
    result = await run_cli(on_cluster, "migrate-redis")
    assert result.code == 2, result
    assert "single Redis" in result.stderr and "Traceback" not in result.stderr

"""`sessions-api sessions restore`: after Redis loses its data, the active sessions come back from
Postgres (which keeps their token hashes), and nothing that ended comes back."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import NewSession, SessionStore, prepare
from tests.app_client import ROUTE, cookie
from tests.cli_runner import run_cli
from tests.conftest import Users
from tests.http_errors import assert_rest_error


async def forget_in_redis(resources: Resources, user_id: str, token_hashes: list[str]) -> None:
    """What a Redis restart does to this user's active sessions."""
    keys = resources.store.keys
    await resources.store.redis.delete(
        keys.user_sessions(user_id),
        *(keys.session(user_id, h) for h in token_hashes),
        *(keys.token(h) for h in token_hashes),
    )


async def test_restore_brings_back_lost_active_sessions_only(
    base_settings: Settings, client: httpx.AsyncClient, users: Users, resources: Resources
) -> None:
    user = users.new_id()
    first = await users.session(user, ip="81.2.69.142")
    second = await users.session(user, ip="8.8.8.8")
    ended = await users.session(user, ip="1.1.1.1")
    await resources.store.end(ended.token)
    expired = await users.session(
        user,
        created_at=utcnow() - timedelta(days=40),
        expires_at=utcnow() - timedelta(days=10),
    )
    await forget_in_redis(
        resources, user, [c.record.token_hash for c in (first, second, ended, expired)]
    )
    lost = await client.get(ROUTE, headers=cookie(first.token))
    assert_rest_error(lost, 401, "unauthenticated")

    result = await run_cli(base_settings, "sessions", "restore")
    assert result.code == 0, result
    assert json.loads(result.lines[-1])["restored"] >= 2

    page = await client.get(ROUTE, headers=cookie(first.token))
    assert page.status_code == 200
    body = page.json()
    # Both were created in the same second: their order is by id, so compare as sets.
    assert {s["token_suffix"] for s in body["sessions"]} == {
        second.record.token_suffix,
        first.record.token_suffix,
    }
    assert {h["token_suffix"] for h in body["history"]} == {
        ended.record.token_suffix,
        expired.record.token_suffix,
    }
    for gone in (ended, expired):
        answer = await client.get(ROUTE, headers=cookie(gone.token))
        assert_rest_error(answer, 401, "unauthenticated")


async def test_restore_leaves_sessions_redis_still_has_untouched(
    base_settings: Settings, users: Users, resources: Resources
) -> None:
    user = users.new_id()
    kept = await users.session(user)
    key = resources.store.keys.session(kept.record.user_id, kept.record.token_hash)
    await resources.store.redis.hset(key, "last_seen_at", "2030-01-01T00:00:00Z")

    result = await run_cli(base_settings, "sessions", "restore")
    assert result.code == 0, result

    assert await resources.store.redis.hget(key, "last_seen_at") == b"2030-01-01T00:00:00Z"


async def test_a_session_ended_while_restore_runs_stays_ended(
    users: Users, resources: Resources
) -> None:
    """restore reads a batch from Postgres, then writes it to Redis. A session ended between
    the two (its Redis key was already gone, so `end` removed nothing) must not come back."""
    user = users.new_id()
    victim = await users.session(user, ip="81.2.69.142")
    survivor = await users.session(user, ip="8.8.8.8")
    await forget_in_redis(resources, user, [victim.record.token_hash, survivor.record.token_hash])

    live = resources.store
    store = SessionStore(live.pool, live.redis, live.keys)
    write_batch = store.active.put_many

    async def end_then_write(**batch: Any) -> None:
        assert victim.record.token_hash in {r.token_hash for r in batch["records"]}
        assert await live.end(victim.token, reason="revoked") is not None
        await write_batch(**batch)

    store.active.put_many = end_then_write  # type: ignore[method-assign]
    await store.restore_active()

    assert await live.authenticate(victim.token) is None
    assert not await live.redis.exists(
        live.keys.session(victim.record.user_id, victim.record.token_hash)
    )
    assert await live.authenticate(survivor.token) is not None
    [ended], _ = await live.list_history_for_user(user_id=user, first=10)
    assert (ended.id, ended.end_reason) == (victim.record.id, "revoked")


async def test_ending_a_session_found_only_in_redis_reports_it_ended(
    base_settings: Settings, users: Users, resources: Resources
) -> None:
    """A writer that skipped Postgres: `end` still ends it, and says so (exit 0)."""
    created = await users.session(users.new_id(), ip="81.2.69.142")
    await resources.store.pool.execute(
        "DELETE FROM sessions WHERE token_hash = $1", created.record.token_hash
    )
    result = await run_cli(base_settings, "sessions", "end", "--token", created.token)
    assert result.code == 0, result
    assert json.loads(result.stdout)["end_reason"] == "logout"
    assert await resources.store.authenticate(created.token) is None


async def test_a_session_deleted_while_restore_runs_does_not_come_back(
    users: Users, resources: Resources
) -> None:
    user = users.new_id()
    victim = await users.session(user, ip="81.2.69.142")
    await forget_in_redis(resources, user, [victim.record.token_hash])

    live = resources.store
    store = SessionStore(live.pool, live.redis, live.keys)
    write_batch = store.active.put_many

    async def delete_then_write(**batch: Any) -> None:
        await live.pool.execute(
            "DELETE FROM sessions WHERE token_hash = $1", victim.record.token_hash
        )
        await write_batch(**batch)

    store.active.put_many = delete_then_write  # type: ignore[method-assign]
    await store.restore_active()
    assert await live.authenticate(victim.token) is None


async def test_discard_never_touches_another_writers_session_with_the_same_token(
    users: Users, resources: Resources
) -> None:
    """discard() undoes a write that may not have landed: it goes by the new rows' own ids, so
    a session another writer stored under the same token keeps working."""
    theirs = await users.session(users.new_id(), ip="81.2.69.142")
    mine = prepare(NewSession(user_id=users.new_id(), ip="8.8.8.8", token=theirs.token), utcnow())
    await resources.store.discard([mine])
    assert await resources.store.authenticate(theirs.token) is not None
    assert await resources.store.get_for_user(
        user_id=theirs.record.user_id, session_id=theirs.record.id
    )

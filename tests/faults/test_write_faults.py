"""Writes that cannot half-happen: revoking, ending and importing under Redis and Postgres faults.

Revoking or ending a session while Redis refuses writes, or while Postgres hangs, never leaves a
session both in history and active, nor a revoked token that still works; a retry finishes the
end. An import cut off by a Redis fault leaves no phantom sessions: Redis holds exactly the
sessions whose tokens were printed, and whatever the import could not remove it names.

These tests pause, stop and kill the run's own servers (own_redis, own_postgres) and always
leave them running.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store import records
from store.errors import outage_of
from store.keys import Keys
from store.models import SessionRecord, utcnow
from store.sessions import IssuedSession, NewSession, NotUndone, SessionStore
from store.tokens import hash_token
from tests.app_client import ROUTE, cookie
from tests.cli_runner import import_row, run_cli, start_import
from tests.http_errors import assert_rest_error
from tests.infra import PostgresServer, RedisServer

# Timeouts of the stores these tests build themselves, to keep the tests short.
SHORT = 1.0
HEX64 = re.compile(r"[0-9a-f]{64}")
PRIVATE_IP = "10.1.2.3"  # never geolocated, so reading a page never writes the geo cache


@asynccontextmanager
async def short_store(
    own_postgres: PostgresServer, own_redis: RedisServer, prefix: str
) -> AsyncIterator[SessionStore]:
    """A SessionStore on the run's own servers whose waits are SHORT seconds."""
    pool = await records.open_pool(
        own_postgres.dsn("sessions"),
        size=4,
        connect_timeout=SHORT,
        acquire_timeout=SHORT,
        statement_timeout=SHORT,
    )
    redis = Redis.from_url(own_redis.url, socket_timeout=SHORT, socket_connect_timeout=SHORT)
    try:
        yield SessionStore(pool, redis, Keys(prefix))
    finally:
        await redis.aclose()
        pool.terminate()  # close() would wait on connections a paused server left hanging


@contextmanager
def writes_paused(redis: RedisServer, seconds: float) -> Iterator[None]:
    """Redis answers reads but holds every write (and every script) for `seconds`."""
    redis.cli("CLIENT", "PAUSE", str(int(seconds * 1000)), "WRITE")
    try:
        yield
    finally:
        redis.cli("CLIENT", "UNPAUSE")


async def session(store: SessionStore, user_id: str, **fields: Any) -> IssuedSession:
    return await store.create(
        NewSession(user_id=user_id, ip=PRIVATE_IP, user_agent="write-faults", **fields)
    )


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


async def where(store: SessionStore, created: IssuedSession) -> tuple[bool, bool, bool]:
    """(its token signs in, listed as active, in history): read from Redis and Postgres, as the
    API reads them, without writing anything."""
    record = created.record
    signs_in = await store.active.get(token_hash=record.token_hash, now=utcnow()) is not None
    # The store's own listing would finish half-done ends on the way: read Redis directly.
    active = await store.active.list_for_user(user_id=record.user_id, now=utcnow())
    history, _ = await store.list_history_for_user(user_id=record.user_id, first=200)
    return (
        signs_in,
        record.id in {r.id for r in active},
        record.id in {r.id for r in history},
    )


async def history_entry(store: SessionStore, created: IssuedSession) -> SessionRecord:
    history, _ = await store.list_history_for_user(user_id=created.record.user_id, first=200)
    [entry] = [r for r in history if r.id == created.record.id]
    return entry


ACTIVE = (True, True, False)
ENDED = (False, False, True)


# -- a revoke that fails half-way ---------------------------------------------------------------


async def test_a_revoke_while_redis_holds_writes_changes_nothing_and_a_retry_finishes_it(
    fragile_server: str, fragile_resources: Resources, own_redis: RedisServer
) -> None:
    """Redis writes paused for longer than the storage timeout (5 s). The
    DELETE answers 503, and the session is still simply active (not also in history); once
    Redis takes writes again, the same DELETE revokes it."""
    store = fragile_resources.store
    user_id = new_user()
    current = await session(store, user_id)
    target = await session(store, user_id)
    route = f"/v1/users/me/sessions/{target.record.id}"
    async with httpx.AsyncClient(base_url=fragile_server, timeout=30) as client:
        with writes_paused(own_redis, 12):
            started = time.monotonic()
            failed = await client.delete(route, headers=cookie(current.token))
            assert failed.status_code == 503, failed.text
            assert_rest_error(failed, 503, "unavailable")
            assert time.monotonic() - started < 2 * 5.0
            # Still paused: what the next requests see.
            assert await where(store, target) == ACTIVE
            page = await client.get(ROUTE, headers=cookie(target.token))
            assert page.status_code == 200
            body = page.json()
            assert target.record.token_suffix in {s["token_suffix"] for s in body["sessions"]}
            assert body["history"] == []
        assert await where(store, target) == ACTIVE

        retried = await client.delete(route, headers=cookie(current.token))
        assert retried.status_code == 204, retried.text
        assert await where(store, target) == ENDED
        assert (await history_entry(store, target)).end_reason == "revoked"
        rejected = await client.get(ROUTE, headers=cookie(target.token))
        assert_rest_error(rejected, 401, "unauthenticated")


async def test_revoking_all_others_while_redis_holds_writes_never_shows_one_twice(
    base_settings: Settings, own_postgres: PostgresServer, own_redis: RedisServer
) -> None:
    user_id = new_user()
    async with short_store(own_postgres, own_redis, base_settings.redis_key_prefix) as store:
        current = await session(store, user_id)
        others = [await session(store, user_id) for _ in range(20)]
        with writes_paused(own_redis, 4 * SHORT):
            with pytest.raises(Exception) as failure:
                await store.revoke_others(user_id=user_id, keep_session_id=current.record.id)
            assert outage_of(failure.value) == "redis", failure.value
            for other in others:
                assert await where(store, other) in (ACTIVE, ENDED)
        for other in others:
            assert await where(store, other) in (ACTIVE, ENDED)

        assert await store.revoke_others(user_id=user_id, keep_session_id=current.record.id) == len(
            others
        )
        for other in others:
            assert await where(store, other) == ENDED
        assert await where(store, current) == ACTIVE


async def test_an_end_while_postgres_hangs_signs_the_token_out_at_once_and_is_finished_later(
    base_settings: Settings, own_postgres: PostgresServer, own_redis: RedisServer
) -> None:
    """Postgres stops between the two steps of an end: the end fails, yet the token no longer
    signs in and the session is not listed; `restore` does not bring it back (it finishes the
    end instead), and ending it again answers the same end."""
    user_id = new_user()
    async with short_store(own_postgres, own_redis, base_settings.redis_key_prefix) as store:
        kept = await session(store, user_id)
        victim = await session(store, user_id)
        with own_postgres.paused():
            started = time.monotonic()
            with pytest.raises(Exception) as failure:
                await store.end(victim.token, reason="revoked")
            assert time.monotonic() - started < 2 * 2 * SHORT
            assert outage_of(failure.value) == "postgres", failure.value
            assert await store.authenticate(victim.token) is None
            active = await store.list_active_for_user(user_id=user_id)
            assert [r.id for r in active] == [kept.record.id]

        # Not in history yet (Postgres has not recorded the end), and not active either.
        assert await where(store, victim) == (False, False, False)
        restored = await store.restore_active()
        assert restored.finished >= 1
        assert await where(store, victim) == ENDED
        entry = await history_entry(store, victim)
        assert entry.end_reason == "revoked"

        again = await store.end(victim.token)
        assert again is not None
        assert (again.ended_at, again.end_reason) == (entry.ended_at, "revoked")
        assert not await store.redis.exists(
            store.keys.session(victim.record.user_id, victim.record.token_hash)
        )
        assert await where(store, kept) == ACTIVE


async def test_the_users_next_look_finishes_an_end_left_half_done(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    """An end that stopped after its first step (the token no longer works, Postgres not yet
    told) leaves the session in neither list; the user's next look at the page finishes it,
    so the session shows in history without waiting for an operator's `sessions restore`."""
    store = resources.store
    user_id = new_user()
    current = await session(store, user_id)
    victim = await session(store, user_id)
    # Step 1 alone, as when Postgres failed right after it.
    await store.active.mark_ended(
        sessions={victim.record.token_hash: user_id}, at=utcnow(), reason="revoked"
    )
    assert await where(store, victim) == (False, False, False)

    first = await client.get(ROUTE, headers=cookie(current.token))
    assert first.status_code == 200, first.text
    assert [s["token_suffix"] for s in first.json()["sessions"]] == [current.record.token_suffix]
    assert await where(store, victim) == ENDED
    assert (await history_entry(store, victim)).end_reason == "revoked"
    assert not await store.redis.exists(
        store.keys.session(victim.record.user_id, victim.record.token_hash)
    )
    second = await client.get(ROUTE, headers=cookie(current.token))
    assert [h["token_suffix"] for h in second.json()["history"]] == [victim.record.token_suffix]


async def test_an_end_whose_last_redis_step_fails_is_still_an_end(
    base_settings: Settings, own_postgres: PostgresServer, own_redis: RedisServer
) -> None:
    """Redis fails after the end is recorded: the end stands (the entry stays marked ended,
    so nothing reads it as active), and ending it again removes the entry."""
    user_id = new_user()
    async with short_store(own_postgres, own_redis, base_settings.redis_key_prefix) as store:
        victim = await session(store, user_id)
        failing = SessionStore(store.pool, store.redis, store.keys)

        async def redis_fails(**kwargs: Any) -> set[str]:
            raise TimeoutError("Redis went away")

        failing.active.remove_many = redis_fails  # type: ignore[method-assign]
        ended = await failing.end(victim.token)
        assert ended is not None and ended.end_reason == "logout"
        assert await where(store, victim) == ENDED
        assert await store.redis.exists(
            store.keys.session(victim.record.user_id, victim.record.token_hash)
        )
        assert await store.end(victim.token) is not None
        assert not await store.redis.exists(
            store.keys.session(victim.record.user_id, victim.record.token_hash)
        )


async def test_a_session_in_redis_only_can_be_revoked(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    """A session the user sees with no Postgres row (another writer skipped it, or an undo
    could not remove it) is revoked like any other, not answered NOT_FOUND."""
    store = resources.store
    user_id = new_user()
    current = await session(store, user_id)
    orphan = await session(store, user_id)
    await store.pool.execute("DELETE FROM sessions WHERE id = $1", uuid.UUID(orphan.record.id))
    response = await client.delete(
        f"/v1/users/me/sessions/{orphan.record.id}", headers=cookie(current.token)
    )
    assert response.status_code == 204, response.text
    assert await store.authenticate(orphan.token) is None
    assert [r.id for r in await store.list_active_for_user(user_id=user_id)] == [current.record.id]


# -- an import cut off: a write never runs late --------------------------------------------------


async def redis_sessions_of(store: SessionStore, user_ids: list[str]) -> set[str]:
    """Token hashes of every session HASH or token pointer in Redis that belongs to these users
    (whatever their index says), found by scanning."""
    found = set()
    for user_id in user_ids:
        async for key in store.redis.scan_iter(match=store.keys.session(user_id, "*"), count=1000):
            found.add(key.decode().rsplit(":", 1)[1])
    async for key in store.redis.scan_iter(match=store.keys.token("*"), count=1000):
        user = await store.redis.get(key)
        if user is not None and user.decode() in user_ids:
            found.add(key.decode().rsplit(":", 1)[1])
    return found


async def postgres_sessions_of(store: SessionStore, user_ids: list[str]) -> set[str]:
    rows = await store.pool.fetch(
        "SELECT token_hash FROM sessions WHERE user_id = ANY($1::text[])", user_ids
    )
    return {r["token_hash"] for r in rows}


def batch_of(user_id: str, count: int) -> list[NewSession]:
    return [NewSession(user_id=user_id, ip=PRIVATE_IP, user_agent=f"row-{i}") for i in range(count)]


@pytest.mark.parametrize("down_for", [3 * SHORT, 9 * SHORT])
async def test_a_write_sent_to_a_hung_redis_never_lands_late(
    base_settings: Settings, own_postgres: PostgresServer, own_redis: RedisServer, down_for: float
) -> None:
    """Redis stops just as a batch is sent, and wakes up after the client gave up on it: the
    batch, run late, writes nothing. Woken within the undo's retries, the undo completes;
    woken later, every session it could not remove is named."""
    user_id = new_user()
    async with short_store(own_postgres, own_redis, base_settings.redis_key_prefix) as store:
        put_many = store.active.put_many

        async def hang_then_put(**kwargs: Any) -> None:
            own_redis.pause()
            await put_many(**kwargs)

        store.active.put_many = hang_then_put  # type: ignore[method-assign]
        await store.redis.ping()  # connected already, as a busy writer is: the batch is sent
        try:
            started = time.monotonic()
            task = asyncio.ensure_future(store.create_many(batch_of(user_id, 200)))
            await asyncio.sleep(down_for)
            own_redis.resume()
            with pytest.raises(Exception) as failure:
                await task
        finally:
            own_redis.resume()
        store.active.put_many = put_many  # type: ignore[method-assign]
        assert time.monotonic() - started < 2 * (down_for + 4 * SHORT + 8)
        await asyncio.sleep(2 * SHORT)  # anything still queued in Redis has run by now

        assert await postgres_sessions_of(store, [user_id]) == set()
        assert await redis_sessions_of(store, [user_id]) == set()
        assert await store.list_active_for_user(user_id=user_id) == []
        named = failure.value.token_hashes if isinstance(failure.value, NotUndone) else []
        if down_for > 8 * SHORT:  # stopped past every retry: all 200 are named
            assert len(named) == 200 and all(HEX64.fullmatch(h) for h in named)
        else:
            assert named == []


# -- an import cut off, through the CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def persistent_redis() -> Iterator[RedisServer]:
    """A redis-server that writes every change to its append-only file before answering, so a
    kill loses nothing it applied (as a production Redis with persistence)."""
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


ROWS = 30000


async def run_import(settings: Settings, user_ids: list[str], fault: Any) -> tuple[int, str, str]:
    """Pipes ROWS rows into `sessions import`; calls `fault()` once the first token is printed.
    Returns the exit status, everything printed, and stderr."""
    proc = await start_import(settings)
    assert proc.stdin and proc.stdout
    rows = b"".join(
        json.dumps(import_row(user_ids[i % len(user_ids)], i)).encode() + b"\n" for i in range(ROWS)
    )

    async def feed() -> None:
        assert proc.stdin
        with suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(rows)
            await proc.stdin.drain()
            proc.stdin.close()

    feeding = asyncio.ensure_future(feed())
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        await fault()
        out, err = await asyncio.wait_for(proc.communicate(), 120)  # a bound, not a speed check
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        feeding.cancel()
    assert proc.returncode is not None
    return proc.returncode, (first + out).decode(), err.decode()


def printed_hashes(stdout: str) -> set[str]:
    return {hash_token(json.loads(line)["token"]) for line in stdout.splitlines()}


def assert_stopped_cleanly(code: int, stdout: str, stderr: str) -> list[str]:
    """Exit 1, the line it stopped at named, no traceback, no token on stderr; returns the
    hashes it names as not removed."""
    assert code == 1, stderr
    assert "Traceback" not in stderr
    printed = stdout.splitlines()
    assert 1 <= len(printed) < ROWS
    assert f"import stopped at line {len(printed) + 1}: Redis failed" in stderr, stderr
    for line in printed:
        assert json.loads(line)["token"] not in stderr
    named = [
        line.split()[-1]
        for line in stderr.splitlines()
        if line.startswith("sessions-api: not removed:")
    ]
    assert all(HEX64.fullmatch(h) for h in named), named
    return named


async def test_an_import_while_redis_is_stopped_leaves_no_phantoms(
    fragile_settings: Settings,
    fragile_resources: Resources,
    own_redis: RedisServer,
) -> None:
    """Redis stopped (SIGSTOP) mid-import for 15 s, then woken. The batch
    sent to it runs late and writes nothing; the undo removes whatever landed; Redis and
    Postgres hold exactly the printed sessions."""
    store = fragile_resources.store
    user_ids = [new_user() for _ in range(5)]

    async def stop_for_a_while() -> None:
        own_redis.pause()
        try:
            await asyncio.sleep(15)  # three times the 5 s storage timeout
        finally:
            own_redis.resume()

    try:
        code, stdout, stderr = await run_import(fragile_settings, user_ids, stop_for_a_while)
    finally:
        own_redis.resume()
    await asyncio.sleep(1)
    printed = printed_hashes(stdout)
    assert await redis_sessions_of(store, user_ids) == printed
    assert await postgres_sessions_of(store, user_ids) == printed
    listed = set()
    for user_id in user_ids:
        listed |= {r.token_hash for r in await store.list_active_for_user(user_id=user_id)}
    assert listed == printed
    named = assert_stopped_cleanly(code, stdout, stderr)
    assert named == []  # woken well within the undo's retries


@pytest.mark.parametrize("in_flight", [False, True], ids=["killed", "killed-mid-batch"])
async def test_an_import_while_redis_is_killed_names_what_it_could_not_remove(
    fragile_settings: Settings,
    fragile_resources: Resources,
    persistent_redis: RedisServer,
    in_flight: bool,
) -> None:
    """Redis (with persistence) killed mid-import, and down until the import gives up: it
    stops naming the first line not imported, and names every session it could not remove.
    Killed while a batch's writes wait in Redis (held by CLIENT PAUSE WRITE), that is the
    whole batch. After Redis is back, Redis holds the printed sessions and at most the named
    ones, which `sessions end --token-hash` ends."""
    settings = fragile_settings.model_copy(update={"redis_url": persistent_redis.url})
    user_ids = [new_user() for _ in range(5)]

    async def kill() -> None:
        if in_flight:
            persistent_redis.cli("CLIENT", "PAUSE", "60000", "WRITE")
            await asyncio.sleep(1)  # the next batch is sent, and waits
        persistent_redis.kill()

    try:
        code, stdout, stderr = await run_import(settings, user_ids, kill)
    finally:
        if persistent_redis.process is None:
            persistent_redis.start()
    printed = printed_hashes(stdout)
    named = [
        line.split()[-1]
        for line in stderr.splitlines()
        if line.startswith("sessions-api: not removed:")
    ]
    redis = Redis.from_url(persistent_redis.url)
    store = SessionStore(fragile_resources.store.pool, redis, fragile_resources.store.keys)
    try:
        assert await postgres_sessions_of(store, user_ids) == printed
        in_redis = await redis_sessions_of(store, user_ids)
        assert printed <= in_redis
        assert in_redis - printed <= set(named)
        assert named == assert_stopped_cleanly(code, stdout, stderr)
        assert not printed & set(named)
        if in_flight:
            assert len(set(named)) == 1000, stderr  # the batch sent; none could be removed
        # Each line holds the options that end its session, user included (its HASH may be
        # all that is left: no pointer, no row).
        options = {
            line.split()[-1]: shlex.split(line.removeprefix("sessions-api: not removed:"))
            for line in stderr.splitlines()
            if line.startswith("sessions-api: not removed:")
        }
        for token_hash in (in_redis - printed) | set(named[:3]):
            ended = await run_cli(settings, "sessions", "end", *options[token_hash])
            assert ended.code == (0 if token_hash in in_redis else 1), ended
        assert await redis_sessions_of(store, user_ids) == printed
    finally:
        await redis.aclose()


async def test_end_by_token_hash_ends_a_session_without_its_token(
    base_settings: Settings, resources: Resources
) -> None:
    store = resources.store
    created = await session(store, new_user(), expires_at=utcnow() + timedelta(days=1))
    result = await run_cli(
        base_settings, "sessions", "end", "--token-hash", created.record.token_hash.upper()
    )
    assert result.code == 0, result
    assert json.loads(result.stdout)["token_suffix"] == created.record.token_suffix
    assert await store.authenticate(created.token) is None
    unknown = await run_cli(base_settings, "sessions", "end", "--token-hash", "0" * 64)
    assert unknown.code == 1 and "no session" in unknown.stderr
    bad = await run_cli(base_settings, "sessions", "end", "--token-hash", "xyz")
    assert bad.code == 2 and "64 hexadecimal" in bad.stderr

"""Pruning history in the store: only rows that ended before a moment in the past, a bounded
number per call, never waiting for a row a writer holds; and the index it needs, added to a
populated database without holding up its writers' transactions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.migrate import available, migrate
from store.models import utcnow
from store.sessions import IssuedSession, NewSession
from tests.app_client import fresh_ip
from tests.conftest import Users
from tests.pg_locks import until_waiting_on_a_lock

DAY = timedelta(days=1)
INDEX = "sessions_end_idx"


def ended(user_id: str, days_ago: int) -> NewSession:
    now = utcnow()
    return NewSession(
        user_id=user_id,
        ip=fresh_ip(),
        created_at=now - (days_ago + 1) * DAY,
        expires_at=now - (days_ago - 29) * DAY,
        ended_at=now - days_ago * DAY,
    )


async def count_of(resources: Resources, user_id: str) -> int:
    n: int = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    return n


@pytest.mark.parametrize("ago", [-DAY, timedelta(0), timedelta(minutes=4)])
async def test_a_moment_not_well_in_the_past_is_refused(
    users: Users, resources: Resources, ago: timedelta
) -> None:
    """Active sessions end in the future, and another machine's clock may be a little ahead:
    a moment not past by more than that could take sessions still active in Redis."""
    user = users.new_id()
    now = utcnow()
    await users.session(user, created_at=now - DAY, expires_at=now + timedelta(minutes=1))
    with pytest.raises(ValueError, match="ago"):
        await resources.store.prune_history(before=utcnow() - ago, limit=10)
    assert await count_of(resources, user) == 1


async def test_a_row_a_writer_holds_is_skipped_then_taken_by_the_next_call(
    users: Users, resources: Resources
) -> None:
    user = users.new_id()
    store = resources.store
    before = utcnow() - 900 * DAY
    await store.prune_history(before=before, limit=10_000)  # what other tests left
    rows: list[IssuedSession] = await store.create_many([ended(user, 1000 + i) for i in range(3)])
    held = rows[0].record.id

    async with store.pool.acquire() as writer, writer.transaction():
        await writer.execute("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", uuid.UUID(held))
        # Does not wait for the writer (it would run out of STORAGE_TIMEOUT and raise).
        assert await store.prune_history(before=before, limit=10) == 2
    assert await count_of(resources, user) == 1
    assert await store.prune_history(before=before, limit=10) == 1
    assert await count_of(resources, user) == 0


async def test_each_call_deletes_at_most_its_limit_oldest_first(
    users: Users, resources: Resources
) -> None:
    user = users.new_id()
    store = resources.store
    before = utcnow() - 900 * DAY
    await store.prune_history(before=before, limit=10_000)
    rows = await store.create_many([ended(user, days) for days in (950, 1200, 1100, 1000)])
    assert await store.prune_history(before=before, limit=2) == 2
    left = await store.pool.fetch("SELECT id FROM sessions WHERE user_id = $1", user)
    assert {str(r["id"]) for r in left} == {rows[0].record.id, rows[3].record.id}


@pytest.fixture
async def fresh_dsn(base_settings: Settings) -> AsyncIterator[str]:
    """A database of its own, dropped at the end."""
    name = f"sessions_migrate_{uuid.uuid4().hex[:12]}"
    yield urlunsplit(urlsplit(base_settings.database_url)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(base_settings.database_url, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def as_of_version_1(dsn: str, rows: int) -> None:
    """The database as the first version left it: migration 0001 only, with rows in it."""
    first = available()[0]
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{urlsplit(dsn).path.lstrip("/")}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(first.sql)
        await conn.execute(
            """CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                               applied_at timestamptz NOT NULL DEFAULT now());
               INSERT INTO schema_migrations (version, name) VALUES (1, '0001_sessions.sql')"""
        )
        await conn.execute(
            """INSERT INTO sessions (id, user_id, token_hash, token_suffix, created_at,
                                     expires_at, ended_at, end_reason, client_ip)
               SELECT gen_random_uuid(), 'u' || g, encode(sha256(g::text::bytea), 'hex'), 'abcdef',
                      now() - interval '500 days', now() - interval '470 days',
                      CASE WHEN g % 2 = 0 THEN now() - interval '499 days' END,
                      CASE WHEN g % 2 = 0 THEN 'logout' END, '192.0.2.1'
                 FROM generate_series(1, $1) g""",
            rows,
        )
    finally:
        await conn.close()


async def index_of(dsn: str) -> tuple[bool, str] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS definition
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE c.relname = $1""",
            INDEX,
        )
        return (row["indisvalid"], row["definition"]) if row else None
    finally:
        await conn.close()


async def test_the_index_is_added_to_a_populated_database_once(fresh_dsn: str) -> None:
    await as_of_version_1(fresh_dsn, rows=5000)
    assert await migrate(fresh_dsn) == [m.name for m in available()[1:]]
    index = await index_of(fresh_dsn)
    assert index is not None
    valid, definition = index
    assert valid
    assert "COALESCE(ended_at, expires_at)" in definition
    assert await migrate(fresh_dsn) == []
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 5000
    finally:
        await conn.close()


async def test_a_migration_cut_off_half_way_runs_again_whole(fresh_dsn: str) -> None:
    """Cut off after its first statements, a migration outside a transaction is not recorded;
    the next `migrate` runs it from its start, replacing what the first run left."""
    await as_of_version_1(fresh_dsn, rows=100)
    conn = await asyncpg.connect(fresh_dsn)
    try:
        # What a build cut off would leave behind: something under the index's name.
        await conn.execute(f"CREATE INDEX {INDEX} ON sessions (created_at)")
    finally:
        await conn.close()
    assert await migrate(fresh_dsn) == [m.name for m in available()[1:]]
    index = await index_of(fresh_dsn)
    assert index is not None
    assert index[0]
    assert "COALESCE(ended_at, expires_at)" in index[1]


async def test_writers_go_on_while_the_index_builds(fresh_dsn: str) -> None:
    """The build waits for the writes already under way, and takes no lock that stops new ones:
    a writer inserts while the build waits (a plain CREATE INDEX would queue it behind)."""
    await as_of_version_1(fresh_dsn, rows=100)
    insert = """INSERT INTO sessions (id, user_id, token_hash, token_suffix, created_at,
                                      expires_at, client_ip)
                VALUES (gen_random_uuid(), $1::text,
                        encode(sha256(convert_to($1::text, 'UTF8')), 'hex'), 'abcdef',
                        now(), now() + interval '1 day', '192.0.2.1')"""
    early, late = await asyncpg.connect(fresh_dsn), await asyncpg.connect(fresh_dsn)
    try:
        async with early.transaction():
            await early.execute(insert, "early")
            build = asyncio.ensure_future(migrate(fresh_dsn))
            await until_waiting_on_a_lock(late, "CREATE INDEX CONCURRENTLY%", within=60)
            await late.execute(insert, "late", timeout=10)
            assert not build.done()
        assert await asyncio.wait_for(build, 60) == [m.name for m in available()[1:]]
        assert await late.fetchval("SELECT count(*) FROM sessions") == 102
    finally:
        await early.close()
        await late.close()
    index = await index_of(fresh_dsn)
    assert index is not None
    assert index[0]

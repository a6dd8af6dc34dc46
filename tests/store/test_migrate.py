"""Migrations: create the database when missing, apply each version once, serialise
concurrent runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sessions_config.settings import Settings
from store.migrate import available, migrate
from tests.cli_runner import run_cli

FIRST = "0001_sessions.sql"


@pytest.fixture
async def fresh_database(base_settings: Settings) -> AsyncIterator[Callable[[], str]]:
    """Makes DSNs naming databases that do not exist yet; drops whatever got created."""
    names: list[str] = []

    def make() -> str:
        name = f"sessions_migrate_{uuid.uuid4().hex[:12]}"
        names.append(name)
        return urlunsplit(urlsplit(base_settings.database_url)._replace(path=f"/{name}"))

    yield make
    admin = await asyncpg.connect(base_settings.database_url, database="postgres")
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def database_exists(dsn: str) -> bool:
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await admin.close()


async def recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(r["version"], r["name"]) for r in rows]
    finally:
        await conn.close()


def test_the_first_migration_is_shipped() -> None:
    assert [m.name for m in available()][:1] == [FIRST]
    assert [m.version for m in available()] == sorted({m.version for m in available()})


async def test_migrate_creates_the_database_applies_once_and_records_it(
    fresh_database: Callable[[], str],
) -> None:
    dsn = fresh_database()
    assert not await database_exists(dsn)

    applied = await migrate(dsn)
    assert applied[:1] == [FIRST]
    assert applied == [m.name for m in available()]
    assert await database_exists(dsn)
    assert await recorded(dsn) == [(m.version, m.name) for m in available()]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.sessions') IS NOT NULL")
    finally:
        await conn.close()

    assert await migrate(dsn) == []
    assert await recorded(dsn) == [(m.version, m.name) for m in available()]


async def test_migrate_on_an_existing_empty_database_applies_everything(
    base_settings: Settings, fresh_database: Callable[[], str]
) -> None:
    dsn = fresh_database()
    admin = await asyncpg.connect(base_settings.database_url, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{urlsplit(dsn).path.lstrip("/")}"')
    finally:
        await admin.close()
    assert await migrate(dsn) == [m.name for m in available()]
    assert await migrate(dsn) == []


@pytest.mark.parametrize("attempt", range(3))
async def test_concurrent_migrates_on_a_fresh_database_both_succeed_and_apply_once(
    fresh_database: Callable[[], str], attempt: int
) -> None:
    dsn = fresh_database()
    first, second = await asyncio.wait_for(asyncio.gather(migrate(dsn), migrate(dsn)), timeout=60)
    assert sorted([first, second]) == [[], [m.name for m in available()]]
    assert await recorded(dsn) == [(m.version, m.name) for m in available()]


async def test_migrate_command_says_up_to_date_the_second_time(
    base_settings: Settings, fresh_database: Callable[[], str]
) -> None:
    settings = base_settings.model_copy(update={"database_url": fresh_database()})
    first = await run_cli(settings, "migrate")
    assert first.code == 0, first
    assert FIRST in first.stdout
    assert "up to date" not in first.stdout

    second = await run_cli(settings, "migrate")
    assert second.code == 0, second
    assert second.stdout.strip() == "database is up to date"
    assert await recorded(settings.database_url) == [(m.version, m.name) for m in available()]

"""Versioned, idempotent migrations: store/migrations/NNNN_name.sql, applied in order, once.

A migration runs in one transaction, unless its first line is NO_TRANSACTION: then each of its
statements (one per `;` that ends a line) runs on its own, as `CREATE INDEX CONCURRENTLY` must,
so that building an index on a populated table never holds up writers. Such a migration is
recorded once all its statements have run; cut off before that, it runs again from its first
statement, so each must be safe to repeat (`DROP INDEX CONCURRENTLY IF EXISTS` before creating).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit

import asyncpg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Serialises concurrent `migrate` runs (two replicas starting at once).
_LOCK_ID = 0x5E55_1015
# Seconds between tries for that lock. A run waiting in pg_advisory_lock would hold a snapshot
# that CREATE INDEX CONCURRENTLY, run by the holder, waits for: a deadlock. Tries hold none.
_LOCK_POLL = 0.1
NO_TRANSACTION = "-- migrate: no transaction"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """The statements, one per `;` that ends a line, without their comment lines."""
        found = []
        for chunk in re.split(r";[ \t]*$", self.sql, flags=re.MULTILINE):
            lines = [ln for ln in chunk.splitlines() if not ln.lstrip().startswith("--")]
            if "\n".join(lines).strip():
                found.append("\n".join(lines).strip())
        return found


def available() -> list[Migration]:
    found = []
    for entry in resources.files("store.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


async def ensure_database(dsn: str) -> bool:
    """Creates the database DATABASE_URL names if the server has no such database yet.

    Returns True when it created one.
    """
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise ValueError("DATABASE_URL names no database")
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        # Another migrate created it meanwhile; a concurrent CREATE DATABASE of the same name
        # fails with a unique violation on pg_database rather than DuplicateDatabaseError.
        return False
    finally:
        await admin.close()
    log.info("created database %s", name)
    return True


async def pending(dsn: str) -> list[str]:
    """The migrations this database has not had yet (raises InvalidCatalogNameError when the
    database does not exist)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        done: set[int] = set()
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    finally:
        await conn.close()
    return [m.name for m in available() if m.version not in done]


async def migrate(dsn: str) -> list[str]:
    """Applies the migrations not applied yet; returns the names it applied."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        # Polling the server: nothing in this process could be awaited instead.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):  # noqa: ASYNC110
            await asyncio.sleep(_LOCK_POLL)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            record = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
            if migration.transactional:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(record, migration.version, migration.name)
            else:
                for statement in migration.statements():
                    await conn.execute(statement)
                await conn.execute(record, migration.version, migration.name)
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
    finally:
        await conn.close()
    return applied_now

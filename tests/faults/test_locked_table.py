"""A locked sessions table: STORAGE_TIMEOUT bounds every Postgres command, so a request waiting on
the lock answers 503 instead of hanging, and the next one works again. The lock is taken on the
run's shared database, for a moment, by a second connection."""

from __future__ import annotations

import asyncpg
import httpx

from sessions_config.settings import Settings
from tests.app_client import JSON, ROUTE, cookie, fresh_ip, media_type
from tests.conftest import Users
from tests.http_errors import assert_rest_error


async def test_locked_sessions_table_answers_503_within_the_storage_timeout(
    base_settings: Settings, client: httpx.AsyncClient, users: Users
) -> None:
    """STORAGE_TIMEOUT bounds every Postgres command: a request waiting on a lock gets a JSON
    503 (the bound below is "no hang", not a speed check), and the next one works again."""
    created = await users.session(users.new_id(), ip=fresh_ip())
    locker = await asyncpg.connect(base_settings.database_url)
    try:
        await locker.execute("SET lock_timeout = '10s'")
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=20) as patient:
            response = await patient.get(ROUTE, headers=cookie(created.token))
        assert response.status_code == 503, response.text
        assert media_type(response) == JSON
        assert response.json()["error"]["code"] == "unavailable"
        assert response.headers["cache-control"] == "no-store"
        assert_rest_error(response, 503, "unavailable")
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()

    response = await client.get(ROUTE, headers=cookie(created.token))
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 1

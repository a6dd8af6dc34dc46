"""`sessions-api sessions create` at the edges of its arguments: a lifetime or a time too large to
keep, a time outside the UTC calendar or before 1970 is a usage error that stores nothing; a
session created long ago without a lifetime is active for 30 days from now."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from tests.app_client import rest_sessions
from tests.cli_runner import assert_usage_error, create, iso, now, run_create
from tests.conftest import Users


async def test_create_with_a_huge_ttl_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_create(base_settings, user_id, "--ttl", "99999999999999")
    assert_usage_error(result, "--ttl")
    assert await resources.store.list_active_for_user(user_id=user_id) == []


async def test_create_at_the_end_of_time_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_create(base_settings, user_id, "--created-at", "9999-12-31T23:59:59Z")
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
    result = await run_create(base_settings, user_id, "--created-at", moment)
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

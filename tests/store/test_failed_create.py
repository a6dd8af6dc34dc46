"""A create that fails is undone: the store writes Postgres first, then Redis, and when Redis fails
the new rows are deleted again, so no session half-exists."""

from __future__ import annotations

import pytest
import redis.exceptions
from redis.asyncio import Redis

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.keys import Keys
from store.sessions import NewSession, SessionStore
from tests.app_client import fresh_ip
from tests.conftest import Users


async def test_create_with_redis_down_leaves_no_postgres_row(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """The store writes Postgres first, then Redis; when Redis fails, the rows are deleted again.

    Redis is made to fail by a client pointing to a closed port, so the pipeline fails as a
    whole. A pipeline that fails half-way (some keys written) is hard to provoke from a test;
    the same compensation path handles it, and this case is the one we can reproduce.
    """
    user_id = users.new_id()
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    store = SessionStore(resources.store.pool, dead, Keys(base_settings.redis_key_prefix))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.create(NewSession(user_id=user_id, ip=fresh_ip(), user_agent="lost"))
    finally:
        await dead.aclose()

    count = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    assert count == 0
    assert await resources.store.list_active_for_user(user_id=user_id) == []
    # The same user can still sign in normally afterwards.
    created = await users.session(user_id, ip=fresh_ip())
    assert await resources.store.authenticate(created.token) is not None

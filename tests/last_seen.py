"""A session's lastSeenAt as GraphQL shows it and as Redis stores it, and the check that a value
is about now."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions_config.resources import Resources
from store.sessions import IssuedSession
from tests.app_client import ts

SESSIONS_QUERY = "{ me { sessions { id createdAt lastSeenAt isCurrent } } }"


async def stored_last_seen(resources: Resources, created: IssuedSession) -> str:
    """The last_seen_at field of the session's Redis hash, as stored."""
    store = resources.store
    value = await store.redis.hget(
        store.keys.session(created.record.user_id, created.record.token_hash), "last_seen_at"
    )
    assert value is not None
    return value.decode() if isinstance(value, bytes) else str(value)


def assert_about_now(text: str) -> None:
    assert abs((ts(text) - datetime.now(UTC)).total_seconds()) < 10, text

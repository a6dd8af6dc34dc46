"""Reading session HASHes: what another writer (or damage) left in a field reads the same on every
look, although ids and times that parse are kept parsed per process."""

from __future__ import annotations

from datetime import timedelta

from sessions_config.resources import Resources
from store.models import format_timestamp, utcnow
from store.sessions import IssuedSession
from tests.conftest import Users


async def listed(resources: Resources, created: IssuedSession) -> list[tuple[str, str]]:
    """(id, created_at) of the user's active sessions, read twice: both reads must agree."""
    store, user_id = resources.store, created.record.user_id
    reads = [await store.list_active_for_user(user_id=user_id) for _ in range(2)]
    first, again = ([(r.id, format_timestamp(r.created_at)) for r in read] for read in reads)
    assert first == again
    return first


async def test_stored_fields_read_the_same_on_every_look(
    resources: Resources, users: Users
) -> None:
    created_at = utcnow() - timedelta(hours=1)
    created = await users.session(users.new_id(), created_at=created_at)
    record, store = created.record, resources.store
    key = store.keys.session(record.user_id, record.token_hash)
    stored = format_timestamp(created_at)
    expected = [(record.id, stored)]
    assert await listed(resources, created) == expected

    # Damaged, it is skipped on every look; written back, it is shown again.
    await store.redis.hset(key, "created_at", "yesterday-ish")
    assert await listed(resources, created) == []
    await store.redis.hset(key, "created_at", stored)
    assert await listed(resources, created) == expected

    # Other spellings of the same id and time, short or padded past any id or time.
    for spelt, time in [
        (record.id.upper(), stored.replace("Z", "+00:00")),
        ("{" + record.id + "}", " " * 80 + stored),
        ("urn:uuid:" + record.id, stored + " " * 80),
    ]:
        await store.redis.hset(key, mapping={"id": spelt, "created_at": time})  # type: ignore[misc]
        assert await listed(resources, created) == expected
    await store.redis.hset(key, "id", "x" * 100)
    assert await listed(resources, created) == []

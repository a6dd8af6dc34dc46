"""Session events (the outbox): every change to a session records its event in the same
transaction, exactly once, without the token; and an expiry is noticed by the sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sessions_config.resources import Resources
from store.models import utcnow
from store.records import StoredEvent
from store.sessions import NewSession, NotUndone, SessionStore
from tests.conftest import Users


async def last_seq(store: SessionStore) -> int:
    return int(await store.pool.fetchval("SELECT coalesce(max(seq), 0) FROM session_events"))


async def events_since(store: SessionStore, seq: int, *user_ids: str) -> list[StoredEvent]:
    return [e for e in await store.events_after(seq) if e.user_id in user_ids]


async def test_a_session_s_life_is_two_events_with_its_fields_and_never_its_token(
    resources: Resources, users: Users
) -> None:
    store = resources.store
    start = await last_seq(store)
    user = users.new_id()
    created = await users.session(user, ip="81.2.69.142", user_agent="Firefox")
    await store.end(created.token)
    await store.end(created.token)  # again: already ended, no second event

    first, last = await events_since(store, start, user)
    assert (first.type, last.type) == ("session.created", "session.ended")
    assert first.seq < last.seq and first.id != last.id
    assert first.session_id == last.session_id == created.record.id
    data = first.data
    assert data["id"] == created.record.id and data["user_id"] == user
    assert data["token_suffix"] == created.record.token_suffix
    assert data["client_ip"] == "81.2.69.142" and data["user_agent"] == "Firefox"
    assert data["created_at"].endswith("Z") and data["ended_at"] is None
    assert last.data["end_reason"] == "logout" and last.data["ended_at"].endswith("Z")
    for event in (first, last):
        text = repr(event)
        assert created.token not in text and created.record.token_hash not in text


async def test_revokes_record_revoked_events_one_per_session(
    resources: Resources, users: Users
) -> None:
    store = resources.store
    user = users.new_id()
    me = await users.session(user)
    one, two, three = [await users.session(user) for _ in range(3)]
    start = await last_seq(store)

    await store.revoke(user_id=user, session_id=one.record.id)
    assert await store.revoke_others(user_id=user, keep_session_id=me.record.id) == 2
    await store.revoke(user_id=user, session_id=one.record.id)  # already revoked

    got = await events_since(store, start, user)
    assert [e.type for e in got] == ["session.revoked"] * 3
    assert {e.session_id for e in got} == {one.record.id, two.record.id, three.record.id}


async def test_two_writers_ending_one_session_at_once_record_one_event(
    resources: Resources, users: Users
) -> None:
    store = resources.store
    user = users.new_id()
    created = await users.session(user)
    start = await last_seq(store)
    await asyncio.gather(*(store.end(created.token) for _ in range(5)))
    assert [e.type for e in await events_since(store, start, user)] == ["session.ended"]


async def test_history_written_as_history_is_no_sign_in(resources: Resources, users: Users) -> None:
    """An import of sessions that had already ended (or expired) records no event."""
    store = resources.store
    user = users.new_id()
    start = await last_seq(store)
    now = utcnow()
    await store.create_many(
        [
            NewSession(
                user_id=user,
                ip="8.8.8.8",
                created_at=now - timedelta(days=3),
                ended_at=now - timedelta(days=2),
                end_reason="logout",
            ),
            NewSession(
                user_id=user,
                ip="8.8.4.4",
                created_at=now - timedelta(days=40),
                expires_at=now - timedelta(days=10),
            ),
            NewSession(user_id=user, ip="1.1.1.1"),
        ]
    )
    assert [e.type for e in await events_since(store, start, user)] == ["session.created"]


async def test_a_write_undone_leaves_no_event(resources: Resources, users: Users) -> None:
    """A create whose Redis step fails is undone: its rows go, and their events with them."""
    store = resources.store
    user = users.new_id()
    start = await last_seq(store)

    async def fails(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Redis went away")

    original = store.active.put_many
    store.active.put_many = fails  # type: ignore[method-assign]
    try:
        with pytest.raises((ConnectionError, NotUndone)):
            await store.create(NewSession(user_id=user, ip="1.1.1.1"))
    finally:
        store.active.put_many = original  # type: ignore[method-assign]
    assert await events_since(store, start, user) == []


async def test_the_sweep_records_each_expiry_once(resources: Resources, users: Users) -> None:
    store = resources.store
    user = users.new_id()
    await store.record_expiries()  # the sweep starts (or goes on) from here
    start = await last_seq(store)
    now = utcnow()
    # Room enough, on a busy machine, to create and end them all before the first expires.
    expiry = now + timedelta(seconds=5)
    soon = await users.session(user, created_at=now - timedelta(hours=1), expires_at=expiry)
    later = await users.session(user, expires_at=now + timedelta(hours=1))
    ended = await users.session(user, created_at=now - timedelta(hours=1), expires_at=expiry)
    assert await store.end(ended.token) is not None
    assert utcnow() < expiry, "too slow to test: the sessions expired before they were set up"
    await asyncio.sleep((expiry - utcnow()).total_seconds() + 0.2)

    await store.record_expiries()
    await store.record_expiries()  # again: nothing new
    got = await events_since(store, start, user)
    assert [(e.type, e.session_id) for e in got] == [
        ("session.created", soon.record.id),
        ("session.created", later.record.id),
        ("session.created", ended.record.id),
        ("session.ended", ended.record.id),
        ("session.expired", soon.record.id),
    ]
    expired = got[-1]
    assert expired.occurred_at == soon.record.expires_at
    assert expired.data["ended_at"] is None and expired.data["end_reason"] is None

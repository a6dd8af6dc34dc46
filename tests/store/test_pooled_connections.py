"""Pooled Postgres connections go back to the pool without a reset, unless they may hold
something that outlives a statement: a connection handed back while it still holds a user's
lock is reset, so the next user of that connection does not hold the lock without knowing."""

from __future__ import annotations

from datetime import timedelta

from sessions_config.resources import Resources
from store import records
from store.models import utcnow
from store.sessions import NewSession
from store.webhooks import DISPATCHER_LOCK
from tests.conftest import Users


async def _advisory_locks_held(resources: Resources) -> int:
    # Seen from another connection than the ones under test: the locks of this database, but
    # the webhook dispatcher's, which a served app of the run holds all along (a bigint key
    # shows as classid, the high half, and objid, the low half).
    return int(
        await resources.store.pool.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND a.datname = current_database()"
            " AND NOT (l.classid = 0 AND l.objid = $1 AND l.objsubid = 1)",
            DISPATCHER_LOCK,
        )
    )


async def test_user_lock_is_released_after_use(resources: Resources, users: Users) -> None:
    user_id = users.new_id()
    async with records.user_lock(resources.store.pool, user_id=user_id):
        assert await _advisory_locks_held(resources) == 1
    assert await _advisory_locks_held(resources) == 0
    # The next taker gets the lock at once.
    async with records.user_lock(resources.store.pool, user_id=user_id):
        pass


async def test_a_connection_given_back_holding_a_lock_is_reset(resources: Resources) -> None:
    pool = resources.store.pool
    async with pool.acquire() as conn:
        records._hold_session_state(conn, True)
        await conn.execute("SELECT pg_advisory_lock(424242)")
        # Given back without unlocking, as when the unlock itself was cut off.
    assert await _advisory_locks_held(resources) == 0


async def test_history_reads_addresses_as_the_service_writes_them(
    resources: Resources, users: Users
) -> None:
    """Postgres spells IPv6 addresses with an embedded IPv4 address dotted; the service, and so
    the history it shows, spells them as they were written (as Python writes them)."""
    user_id = users.new_id()
    now = utcnow()
    ips = ["::ffff:1.2.3.4", "2001:db8::1", "203.0.113.9", "64:ff9b::203.0.113.9"]
    created = await resources.store.create_many(
        [
            NewSession(
                user_id=user_id,
                ip=ip,
                created_at=now - timedelta(days=i + 2),
                ended_at=now - timedelta(days=i + 1),
            )
            for i, ip in enumerate(ips)
        ]
    )
    page = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert [r.client_ip for r in page.records] == [c.record.client_ip for c in created]
    assert page.records[0].client_ip == "::ffff:102:304"
    assert [r.id for r in page.records] == [c.record.id for c in created]
    # Every field as written, the ends included.
    assert page.records == [c.record for c in created]

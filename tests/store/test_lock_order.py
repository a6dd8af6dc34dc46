"""Writers that meet on the same rows in different orders: the webhook fan-out and a user's
deletion. Neither may fail for the other, and neither may wait for the other for good."""

from __future__ import annotations

import asyncio

from sessions_config.resources import Resources
from store import webhooks
from tests.conftest import Users
from tests.pg_locks import until_waiting_on_a_lock

NO_HANG = 15.0  # seconds: a "does not wait for good" bound, not a measure of speed


async def test_fan_out_passes_over_events_another_transaction_holds(
    fragile_resources: Resources, fragile_users: Users
) -> None:
    # The run's own Postgres: no dispatcher there fans these events out first.
    pool = fragile_resources.store.pool
    user = fragile_users.new_id()
    for _ in range(3):
        await fragile_users.session(user)
    seqs = [
        int(r["seq"])
        for r in await pool.fetch(
            "SELECT seq FROM session_events WHERE user_id = $1 ORDER BY seq", user
        )
    ]
    assert len(seqs) == 3

    async with pool.acquire() as holder, holder.transaction():
        # What a deletion of the session does to its event, before it commits.
        await holder.execute("SELECT 1 FROM session_events WHERE seq = $1 FOR UPDATE", seqs[1])
        # The one held is passed over, and not counted as done.
        assert (
            await asyncio.wait_for(
                webhooks.fan_out(pool, payloads=dict.fromkeys(seqs)), timeout=NO_HANG
            )
            == 2
        )
        fanned = {
            int(r["seq"])
            for r in await pool.fetch(
                """SELECT seq FROM session_events
                    WHERE seq = ANY($1::bigint[]) AND fanned_out_at IS NOT NULL""",
                seqs,
            )
        }
        assert fanned == {seqs[0], seqs[2]}

    # Let go of, the event passed over is taken by the next pass.
    assert await webhooks.fan_out(pool, payloads=dict.fromkeys(seqs)) == 1
    assert await pool.fetchval(
        "SELECT bool_and(fanned_out_at IS NOT NULL) FROM session_events WHERE seq = ANY($1)", seqs
    )
    await fragile_resources.store.delete_user(user_id=user)


async def test_a_user_s_deletion_starts_over_when_postgres_breaks_a_deadlock(
    resources: Resources, users: Users
) -> None:
    store = resources.store
    user = users.new_id()
    for _ in range(2):
        await users.session(user)
    first, last = [
        r["id"]
        for r in await store.pool.fetch(
            "SELECT id FROM sessions WHERE user_id = $1 ORDER BY id", user
        )
    ]

    # Postgres looks for a deadlock once a backend has waited this long; the one that looks
    # first (the one that waited first) is cancelled.
    timeout_ms = await store.pool.fetchval(
        "SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'"
    )
    async with store.pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        deletion: asyncio.Task[int] | None = None
        try:
            # Another writer (the expiry sweep records events so) holds the last session...
            await other.execute("SELECT 1 FROM sessions WHERE id = $1 FOR KEY SHARE", last)
            deletion = asyncio.create_task(store.delete_user(user_id=user))
            # ...the deletion, holding the first, waits for it...
            await until_waiting_on_a_lock(store.pool, "%FROM sessions WHERE user_id = $1%")
            # ...long enough to look first, well before the writer's own look...
            await asyncio.sleep(min(0.3, timeout_ms / 3000))
            # ...and the writer wants the first: each waits on the other.
            await asyncio.wait_for(
                other.execute("SELECT 1 FROM sessions WHERE id = $1 FOR KEY SHARE", first),
                timeout=NO_HANG,
            )
        except BaseException:
            if deletion is not None:
                deletion.cancel()  # nothing left running into the next test
            raise
        finally:
            await tx.commit()
        assert await asyncio.wait_for(deletion, timeout=NO_HANG) == 2

    assert await store.pool.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user) == 0
    assert (
        await store.pool.fetchval("SELECT count(*) FROM session_events WHERE user_id = $1", user)
        == 0
    )

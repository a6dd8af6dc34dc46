"""`sessions-api prune`: past sessions that ended longer ago than the retention are deleted, in
batches of bounded size; recent history and active sessions (Postgres and Redis) stay as they
were; a run stopped half-way is finished by the next one; the page keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import IssuedSession, NewSession
from tests.app_client import fresh_ip, rest_sessions, ts
from tests.cli_runner import assert_usage_error, cli_command, cli_env, run_cli
from tests.conftest import Users

DAY = timedelta(days=1)


def past(user_id: str, *, ended_days_ago: float, lifetime_days: float = 30) -> NewSession:
    """A session that was signed out `ended_days_ago` days ago."""
    now = utcnow()
    created_at = now - (ended_days_ago + 1) * DAY
    return NewSession(
        user_id=user_id,
        ip=fresh_ip(),
        user_agent="prune-test",
        created_at=created_at,
        expires_at=created_at + lifetime_days * DAY,
        ended_at=now - ended_days_ago * DAY,
    )


def expired(user_id: str, *, expired_days_ago: float) -> NewSession:
    """A session nobody ended, that expired `expired_days_ago` days ago."""
    expires_at = utcnow() - expired_days_ago * DAY
    return NewSession(
        user_id=user_id,
        ip=fresh_ip(),
        user_agent="prune-test",
        created_at=expires_at - 30 * DAY,
        expires_at=expires_at,
    )


async def stored_ids(resources: Resources, user_id: str) -> set[str]:
    rows = await resources.store.pool.fetch("SELECT id FROM sessions WHERE user_id = $1", user_id)
    return {str(r["id"]) for r in rows}


async def redis_state(resources: Resources, active: list[IssuedSession]) -> dict[str, Any]:
    """Every Redis key of these active sessions (their HASHes, their users' indexes, their
    tokens' pointers): type, value and expiry time."""
    redis, keys = resources.store.redis, resources.store.keys
    names = {keys.session(s.record.user_id, s.record.token_hash) for s in active}
    names |= {keys.user_sessions(s.record.user_id) for s in active}
    names |= {keys.token(s.record.token_hash) for s in active}
    state: dict[str, Any] = {}
    for name in sorted(names):
        kind = (await redis.type(name)).decode()
        if kind == "hash":
            value: Any = sorted((await redis.hgetall(name)).items())
        elif kind == "string":
            value = await redis.get(name)
        else:
            value = await redis.zrange(name, 0, -1, withscores=True)
        state[name] = (kind, value, await redis.execute_command("EXPIRETIME", name))
    return state


def summary(result: Any) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.lines) == 1, result
    answer: dict[str, Any] = json.loads(result.lines[0])
    return answer


async def old_rows_cleared(settings: Settings, older_than: str) -> None:
    """Deletes what other tests left older than this, so that counts are this test's own."""
    result = await run_cli(settings, "prune", "--older-than", older_than)
    assert result.code == 0, result


async def test_only_history_older_than_the_retention_goes(
    base_settings: Settings, resources: Resources, users: Users, client: httpx.AsyncClient
) -> None:
    user = users.new_id()
    store = resources.store
    old = await store.create_many(
        [
            past(user, ended_days_ago=800),
            past(user, ended_days_ago=401),
            # Ended long ago though it would be valid for years yet: its end is what counts.
            past(user, ended_days_ago=500, lifetime_days=3650),
            expired(user, expired_days_ago=700),
            expired(user, expired_days_ago=401),
        ]
    )
    recent = await store.create_many(
        [
            past(user, ended_days_ago=399),
            past(user, ended_days_ago=3),
            # Created long ago, ended yesterday: recent history.
            past(user, ended_days_ago=1, lifetime_days=3650),
            expired(user, expired_days_ago=399),
            expired(user, expired_days_ago=1),
        ]
    )
    long_ago = utcnow() - 900 * DAY
    active = [
        await users.session(user, ip=fresh_ip()),
        await users.session(user, ip=fresh_ip()),
        # Active for ten years, created long before the retention line: never pruned.
        await users.session(
            user, ip=fresh_ip(), created_at=long_ago, expires_at=long_ago + 3650 * DAY
        ),
    ]
    other = users.new_id()
    other_active = [await users.session(other, ip=fresh_ip())]
    redis_before = await redis_state(resources, active + other_active)

    result = await run_cli(base_settings, "prune")  # HISTORY_RETENTION: 400 days by default
    assert result.code == 0, result
    done = summary(result)
    assert done["deleted"] >= len(old)
    assert done["complete"] is True
    older_than = done["older_than"]
    assert older_than.endswith("Z")
    assert abs((utcnow() - 400 * DAY) - ts(older_than)) <= timedelta(minutes=1)

    assert await stored_ids(resources, user) == {s.record.id for s in recent + active}
    assert await redis_state(resources, active + other_active) == redis_before

    page = await rest_sessions(client, active[0].token)
    assert {s["token_suffix"] for s in page["sessions"]} == {s.record.token_suffix for s in active}
    assert {h["token_suffix"] for h in page["history"]} == {s.record.token_suffix for s in recent}


async def test_batches_are_of_the_size_asked(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    await old_rows_cleared(base_settings, "500d")
    user = users.new_id()
    await resources.store.create_many([past(user, ended_days_ago=1000 + i) for i in range(30)])

    result = await run_cli(base_settings, "prune", "--older-than", "500d", "--batch", "7")
    assert result.code == 0, result
    done = summary(result)
    assert (done["deleted"], done["batches"], done["complete"]) == (30, 5, True)  # 4 x 7 + 2
    assert await stored_ids(resources, user) == set()


async def test_a_run_stopped_early_is_finished_by_the_next(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    await old_rows_cleared(base_settings, "500d")
    user = users.new_id()
    await resources.store.create_many([expired(user, expired_days_ago=900 + i) for i in range(30)])
    args = ("prune", "--older-than", "500d", "--batch", "7")

    first = await run_cli(base_settings, *args, "--max-batches", "2")
    assert first.code == 0, first
    assert summary(first) | {"seconds": 0, "older_than": "", "audit_deleted": 0} == {
        "deleted": 14,
        "batches": 2,
        "complete": False,
        "seconds": 0,
        "older_than": "",
        "audit_deleted": 0,
    }
    assert len(await stored_ids(resources, user)) == 16

    second = await run_cli(base_settings, *args)
    assert second.code == 0, second
    done = summary(second)
    assert (done["deleted"], done["batches"], done["complete"]) == (16, 3, True)
    assert await stored_ids(resources, user) == set()


async def test_a_history_backlog_does_not_starve_the_audit_trail(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """--max-batches bounds each pass: a backlog of history that takes all its batches, run
    after run, still lets audit rows past AUDIT_RETENTION go."""
    await old_rows_cleared(base_settings, "500d")
    user = users.new_id()
    await resources.store.create_many([past(user, ended_days_ago=1000 + i) for i in range(3)])
    await resources.store.pool.execute(
        """INSERT INTO audit_log (at, actor_type, action, target_user_id)
           SELECT now() - interval '500 days', 'cli', 'session.revoked', $1
             FROM generate_series(1, 3)""",
        user,
    )
    args = ("prune", "--older-than", "500d", "--batch", "1", "--max-batches", "2")
    result = await run_cli(base_settings, *args, AUDIT_RETENTION="400d")
    assert result.code == 0, result
    done = summary(result)
    assert (done["deleted"], done["audit_deleted"], done["complete"]) == (2, 2, False)


async def test_a_terminated_run_stops_between_batches_and_says_so(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """SIGTERM (a CronJob past its deadline) during the pause: the batch done stays done, the
    summary is printed, exit 130; the next run deletes the rest."""
    await old_rows_cleared(base_settings, "500d")
    user = users.new_id()
    await resources.store.create_many([past(user, ended_days_ago=700) for _ in range(20)])
    proc = await asyncio.create_subprocess_exec(
        *cli_command(),
        *("prune", "--older-than", "500d", "--batch", "7", "--pause", "60"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(base_settings),
    )
    try:
        deadline = time.monotonic() + 60  # "no hang" bound
        while len(await stored_ids(resources, user)) > 13:
            assert time.monotonic() < deadline, "the first batch never ran"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    done = json.loads(out)
    assert (done["deleted"], done["batches"], done["complete"]) == (7, 1, False)
    assert len(await stored_ids(resources, user)) == 13

    again = await run_cli(base_settings, "prune", "--older-than", "500d")
    assert again.code == 0, again
    assert await stored_ids(resources, user) == set()


async def test_the_page_keeps_answering_while_prune_runs(
    base_settings: Settings, resources: Resources, users: Users, client: httpx.AsyncClient
) -> None:
    """Prune, the page and a writer at once: every answer is 200 with the recent history on
    top, and afterwards the history is exactly the recent sessions and the ones ended meanwhile."""
    user = users.new_id()
    me = await users.session(user, ip=fresh_ip())
    store = resources.store
    for _ in range(4):
        await store.create_many([past(user, ended_days_ago=600 + i) for i in range(500)])
    recent = await store.create_many([past(user, ended_days_ago=1 + i / 10) for i in range(5)])
    newest_first = [s.record.token_suffix for s in recent]

    proc = await asyncio.create_subprocess_exec(
        *cli_command(),
        *("prune", "--batch", "20", "--pause", "0.01"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(base_settings),
    )
    output = asyncio.ensure_future(proc.communicate())
    ended_meanwhile: list[IssuedSession] = []
    answers = 0
    try:
        async with asyncio.timeout(120):  # "no hang" bound
            while not output.done():
                page = await rest_sessions(client, me.token)
                answers += 1
                # Older ones follow, as many as are left.
                assert history_of(page, ended_meanwhile)[: len(recent)] == newest_first
                if len(ended_meanwhile) < 20:
                    # A writer at work too: a session signed in, then out.
                    issued = await users.session(user, ip=fresh_ip())
                    assert await store.end(issued.token) is not None
                    ended_meanwhile.append(issued)
            out, err = await output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert answers >= 1
    done = json.loads(out)
    assert done["deleted"] >= 2000
    assert done["complete"] is True

    page = await rest_sessions(client, me.token)
    assert [s["token_suffix"] for s in page["sessions"]] == [me.record.token_suffix]
    assert history_of(page, ended_meanwhile) == newest_first
    assert len(page["history"]) == len(ended_meanwhile) + len(recent)


def history_of(page: dict[str, Any], ended_meanwhile: list[IssuedSession]) -> list[str]:
    """The page's history after the sessions ended during the test (newest, in any order: some
    share a second), checked to be those; what follows them, oldest last."""
    history = [h["token_suffix"] for h in page["history"]]
    top = len(ended_meanwhile)
    assert set(history[:top]) == {s.record.token_suffix for s in ended_meanwhile}
    return history[top:]


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--older-than", "abc"], "--older-than"),
        (["--older-than", "-5d"], "--older-than"),
        (["--older-than", "400"], "--older-than"),
        (["--older-than", "0h"], "--older-than"),
        (["--older-than", "99999999d"], "--older-than"),
        (["--batch", "0"], "--batch"),
        (["--batch", "many"], "--batch"),
        (["--pause", "-1"], "--pause"),
        (["--pause", "nan"], "--pause"),
        (["--max-batches", "0"], "--max-batches"),
    ],
)
async def test_bad_arguments_are_one_line_and_delete_nothing(
    base_settings: Settings, resources: Resources, users: Users, args: list[str], word: str
) -> None:
    user = users.new_id()
    [old] = await resources.store.create_many([past(user, ended_days_ago=5000)])
    result = await run_cli(base_settings, "prune", *args)
    assert_usage_error(result, word)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert await stored_ids(resources, user) == {old.record.id}


async def test_a_bad_retention_setting_is_named(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user = users.new_id()
    [old] = await resources.store.create_many([past(user, ended_days_ago=5000)])
    result = await run_cli(base_settings, "prune", HISTORY_RETENTION="-400d")
    assert_usage_error(result, "HISTORY_RETENTION")
    assert await stored_ids(resources, user) == {old.record.id}


async def test_the_retention_setting_is_the_default(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user = users.new_id()
    [week_old, _] = await resources.store.create_many(
        [past(user, ended_days_ago=7), past(user, ended_days_ago=5)]
    )
    result = await run_cli(base_settings, "prune", HISTORY_RETENTION="144h")  # six days
    assert result.code == 0, result
    assert week_old.record.id not in await stored_ids(resources, user)
    assert len(await stored_ids(resources, user)) == 1

    # --older-than wins over the setting.
    result = await run_cli(base_settings, "prune", "--older-than", "1h", HISTORY_RETENTION="9d")
    assert result.code == 0, result
    assert await stored_ids(resources, user) == set()

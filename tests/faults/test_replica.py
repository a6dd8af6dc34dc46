"""A read replica (DATABASE_REPLICA_URL): history pages and the signals' timeline read from it
while it is healthy, and from the primary while it is down, hung, or behind by more than
DATABASE_REPLICA_MAX_LAG, which /readyz reports without making the service unready.

Which server answered is seen from what the page shows: with the replica's replay paused, a
session written since is on the primary only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from prometheus_client import REGISTRY

from sessions_config.resources import open_resources
from sessions_config.settings import Settings
from store.models import utcnow
from tests.app_client import ROUTE, cookie
from tests.conftest import Users
from tests.infra import PostgresReplica, PostgresServer
from tests.servers import serve

# Bound on every wait for the replica to catch up, come back, or be seen behind.
PATIENCE = 60.0
GRAPHQL_HISTORY = "{ me { history(first: 50) { edges { node { userAgent } } } } }"

Pair = tuple[PostgresServer, PostgresReplica]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {PATIENCE:.0f} s")
        await asyncio.sleep(0.1)


def replica_settings(base: Settings, pair: Pair, *, max_lag: float) -> Settings:
    primary, replica = pair
    return base.model_copy(
        update={
            "database_url": primary.dsn("sessions"),
            "database_replica_url": replica.dsn("sessions"),
            "database_replica_max_lag": max_lag,
            "ready_timeout": 2.0,
            # No expiry sweep committing every second: the tests watch the primary go idle.
            "event_workers": False,
        }
    )


class Page:
    """A user of the app served with replica settings: their page's history, and writes."""

    def __init__(self, client: httpx.AsyncClient, users: Users, user_id: str, token: str):
        self.client = client
        self.users = users
        self.user_id = user_id
        self.token = token

    async def history(self) -> set[str]:
        """The user agents of the page's history (sessions written in one second may come in
        either order)."""
        response = await self.client.get(ROUTE, headers=cookie(self.token))
        assert response.status_code == 200, response.text
        return {h["user_agent"] for h in response.json()["history"]}

    async def graphql_history(self) -> set[str]:
        response = await self.client.post(
            "/graphql", json={"query": GRAPHQL_HISTORY}, headers=cookie(self.token)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return {e["node"]["userAgent"] for e in body["data"]["me"]["history"]["edges"]}

    async def end_one(self, agent: str) -> None:
        """A past session, written on the primary."""
        now = utcnow()
        await self.users.session(
            self.user_id,
            user_agent=agent,
            created_at=now - timedelta(minutes=10),
            ended_at=now - timedelta(minutes=5),
        )

    async def readyz(self) -> dict[str, Any]:
        response = await self.client.get("/readyz")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "ready" and body["postgres"] == "ok", body
        return body


@asynccontextmanager
async def page_on(settings: Settings) -> AsyncIterator[Page]:
    """The app served with these settings, and a fresh user signed in to it."""
    async with open_resources(settings) as res:
        users = Users(res)
        user_id = Users.new_id()
        current = await users.session(user_id, user_agent="current")
        with serve(settings) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield Page(client, users, user_id, current.token)


async def has(server: PostgresServer, agent: str) -> bool:
    """Whether this server (the primary, or the replica) has the session of this user agent."""
    conn = await asyncpg.connect(server.dsn("sessions"))
    try:
        count = await conn.fetchval("SELECT count(*) FROM sessions WHERE user_agent = $1", agent)
    finally:
        await conn.close()
    return bool(count == 1)


async def caught_up(page: Page, replica: PostgresReplica, agent: str) -> None:
    """Writes a past session and waits until the replica has replayed it (so that it has replayed
    a commit lately) and the app takes the replica as healthy."""
    await page.end_one(agent)

    async def replayed() -> bool:
        return await has(replica, agent)

    async def healthy() -> bool:
        return (await page.readyz())["postgres_replica"] == "ok"

    await eventually(replayed, f"the replica replays {agent!r}")
    await eventually(healthy, "the app takes the replica as healthy")


@contextmanager
def replay_paused(replica: PostgresReplica) -> Iterator[None]:
    replica.pause_replay()
    try:
        deadline = time.monotonic() + PATIENCE
        while replica.sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "the replica's replay did not pause"
            time.sleep(0.05)
        yield
    finally:
        replica.resume_replay()


def fallbacks(reason: str) -> float:
    value = REGISTRY.get_sample_value("sessions_api_replica_fallbacks_total", {"reason": reason})
    return value or 0.0


async def test_history_is_read_from_the_replica(
    base_settings: Settings, replicated_postgres: Pair
) -> None:
    primary, replica = replicated_postgres
    settings = replica_settings(base_settings, replicated_postgres, max_lag=3600)
    async with page_on(settings) as page:
        await caught_up(page, replica, f"old-{page.user_id}")
        old = f"old-{page.user_id}"
        new = f"new-{page.user_id}"
        with replay_paused(replica):
            await page.end_one(new)
            assert await has(primary, new)
            assert await page.history() == {old}
            assert await page.graphql_history() == {old}

        async def shows_new() -> bool:
            return await page.history() == {new, old}

        await eventually(shows_new, "the history shows the new session once replayed")
        assert await page.graphql_history() == {new, old}


async def test_a_lagging_replica_is_skipped(
    base_settings: Settings, replicated_postgres: Pair
) -> None:
    replica = replicated_postgres[1]
    settings = replica_settings(base_settings, replicated_postgres, max_lag=1.0)
    async with page_on(settings) as page:
        old = f"old-{page.user_id}"
        new = f"new-{page.user_id}"
        await caught_up(page, replica, old)
        with replay_paused(replica):
            await page.end_one(new)

            async def lagging() -> bool:
                return (await page.readyz())["postgres_replica"] == "lagging"

            await eventually(lagging, "the replica is seen behind")
            before = fallbacks("lagging")
            assert await page.history() == {new, old}
            assert not await has(replica, new)
            assert fallbacks("lagging") > before
            metrics = (await page.client.get("/metrics")).text
            assert 'sessions_api_replica_fallbacks_total{reason="lagging"}' in metrics

        async def healthy() -> bool:
            return (await page.readyz())["postgres_replica"] == "ok"

        await eventually(healthy, "the replica catches up")
        assert await page.history() == {new, old}

        # Idle, with its last replayed commit older than the max lag, it is not behind.
        async def idle() -> bool:
            return replica.sql("SELECT now() - pg_last_xact_replay_timestamp() > '2 s'") == "t"

        await eventually(idle, "no commit for a while")
        assert (await page.readyz())["postgres_replica"] == "ok"
        before = fallbacks("lagging")
        assert await page.history() == {new, old}
        assert fallbacks("lagging") == before


async def test_a_stopped_replica_is_skipped_until_it_is_back(
    base_settings: Settings, replicated_postgres: Pair
) -> None:
    primary, replica = replicated_postgres
    settings = replica_settings(base_settings, replicated_postgres, max_lag=3600)
    async with page_on(settings) as page:
        old = f"old-{page.user_id}"
        await caught_up(page, replica, old)
        replica.kill()
        try:
            before = fallbacks("unavailable")
            assert await page.history() == {old}
            assert await page.graphql_history() == {old}
            assert fallbacks("unavailable") > before
            assert (await page.readyz())["postgres_replica"] == "unavailable"
            down = f"down-{page.user_id}"
            await page.end_one(down)
            assert await page.history() == {down, old}
        finally:
            replica.start()

        back = f"back-{page.user_id}"
        await caught_up(page, replica, back)
        late = f"late-{page.user_id}"
        with replay_paused(replica):
            await page.end_one(late)
            assert await has(primary, late)
            assert await page.history() == {back, down, old}
        await eventually(
            lambda: _shows(page, {late, back, down, old}), "the history shows the late one"
        )


async def _shows(page: Page, agents: set[str]) -> bool:
    return await page.history() == agents


async def test_a_hung_replica_is_skipped(
    base_settings: Settings, replicated_postgres: Pair
) -> None:
    replica = replicated_postgres[1]
    settings = replica_settings(base_settings, replicated_postgres, max_lag=3600).model_copy(
        update={"storage_timeout": 1.0, "pool_acquire_timeout": 0.5, "ready_timeout": 1.0}
    )
    async with page_on(settings) as page:
        old = f"old-{page.user_id}"
        await caught_up(page, replica, old)
        with replica.paused():
            before = fallbacks("unavailable")
            assert await page.history() == {old}
            assert fallbacks("unavailable") > before
            assert (await page.readyz())["postgres_replica"] == "unavailable"
            hung = f"hung-{page.user_id}"
            await page.end_one(hung)
            assert await page.history() == {hung, old}

        async def healthy() -> bool:
            return (await page.readyz())["postgres_replica"] == "ok"

        await eventually(healthy, "the replica answers again")
        assert await page.history() == {hung, old}


SIGNALS = "{ me { sessions { userAgent isNewLocation } } }"


async def test_signals_read_the_timeline_from_the_replica(
    base_settings: Settings, replicated_postgres: Pair
) -> None:
    primary, replica = replicated_postgres
    settings = replica_settings(base_settings, replicated_postgres, max_lag=3600)
    async with page_on(settings) as page:  # signed in from Great Britain

        async def probe_is_new() -> bool | None:
            response = await page.client.post(
                "/graphql", json={"query": SIGNALS}, headers=cookie(page.token)
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert "errors" not in body, body
            found = {s["userAgent"]: s["isNewLocation"] for s in body["data"]["me"]["sessions"]}
            return found.get("probe")

        await caught_up(page, replica, f"old-{page.user_id}")
        earlier = f"earlier-{page.user_id}"
        with replay_paused(replica):
            # An hour ago from the United States (on the primary only), and now from there again.
            now = utcnow()
            await page.users.session(
                page.user_id,
                ip="8.8.8.8",
                user_agent=earlier,
                created_at=now - timedelta(hours=1),
                ended_at=now - timedelta(minutes=30),
            )
            await page.users.session(page.user_id, ip="8.8.8.8", user_agent="probe")
            assert await has(primary, earlier)
            # The replica's timeline knows of no earlier session there.
            assert await probe_is_new() is True

        async def not_new() -> bool:
            return await probe_is_new() is False

        await eventually(not_new, "the timeline has the earlier session once replayed")

"""REDIS_MODE=sentinel, on a group of the run's own (a master, its replica, three sentinels:
tests/infra.py): the app follows a failover by itself (the master killed, or demoted alive),
answering 503 while there is no master and 200 again after, and a session revoked before the
failover stays revoked after it, because an end counts only once a replica has it
(REDIS_WAIT_REPLICAS). What a failover raises is an outage (503), never a bug (500).

Every wait for the group or the app polls, up to PATIENCE; no fixed sleep decides anything.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

from sessions_config.resources import Resources, open_resources, redis_client
from sessions_config.settings import Settings
from store.errors import describe_outage, outage_of
from tests.app_client import ROUTE, cookie
from tests.cli_runner import run_cli
from tests.conftest import Users
from tests.http_errors import assert_rest_error
from tests.infra import RedisServer, SentinelGroup
from tests.servers import serve

# Bound on the app answering 200 again after the master is killed (the sentinels take a second
# or two to promote the replica) and on every other wait here.
PATIENCE = 30.0


def sentinel_settings(base: Settings, group: SentinelGroup, **changes: object) -> Settings:
    return base.model_copy(
        update={
            "redis_mode": "sentinel",
            "redis_sentinels": group.addresses,
            "redis_sentinel_service": group.SERVICE,
            # Its host and port are not used in sentinel mode: the sentinels name the master.
            "redis_url": "redis://127.0.0.1:1/0",
            # Quick to give up, so that a WAIT no replica answers costs 1.6 s, not 4.
            "storage_timeout": 2.0,
            "storage_connect_timeout": 1.0,
            "pool_acquire_timeout": 1.0,
            **changes,
        }
    )


@pytest.fixture(scope="module")
def settings(
    base_settings: Settings, database: str, redis_keyspace: str, sentinel_group: SentinelGroup
) -> Settings:
    return sentinel_settings(base_settings, sentinel_group)


@pytest.fixture(scope="module")
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    async with open_resources(settings) as res:
        yield res


@pytest.fixture(scope="module")
def app(settings: Settings, resources: Resources) -> Iterator[str]:
    with serve(settings) as url:
        yield url


@pytest.fixture
async def client(app: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app, timeout=30) as c:
        yield c


@dataclass(frozen=True)
class SignedIn:
    """A fresh user, signed in with the first of their sessions; each session's id and token
    by its user agent."""

    ids: dict[str, str]
    tokens: dict[str, str]

    @property
    def token(self) -> str:
        return next(iter(self.tokens.values()))

    def other(self) -> tuple[str, str]:
        """The user agent and id of a session other than the current one."""
        return list(self.ids.items())[1]

    def without(self, agent: str) -> SignedIn:
        """The same user, with that session gone from their page."""
        return SignedIn(
            {a: i for a, i in self.ids.items() if a != agent},
            {a: t for a, t in self.tokens.items() if a != agent},
        )


async def signed_in(resources: Resources, count: int = 2) -> SignedIn:
    users = Users(resources)
    user_id = users.new_id()
    ids, tokens = {}, {}
    for _ in range(count):
        agent = f"agent-{uuid.uuid4().hex[:8]}"
        issued = await users.session(user_id, user_agent=agent)
        ids[agent], tokens[agent] = issued.record.id, issued.token
    return SignedIn(ids, tokens)


async def page(client: httpx.AsyncClient, user: SignedIn) -> int:
    """The user's page: 200 naming exactly their sessions, or 503 `unavailable`."""
    response = await client.get(ROUTE, headers=cookie(user.token))
    if response.status_code == 503:
        assert_rest_error(response, 503, "unavailable")
        return 503
    assert response.status_code == 200, response.text
    sessions = response.json()["sessions"]
    assert {s["user_agent"] for s in sessions} == set(user.ids), sessions
    assert sum(s["is_current"] for s in sessions) == 1, sessions
    return 200


async def revoke(client: httpx.AsyncClient, user: SignedIn, session_id: str) -> int:
    response = await client.delete(f"{ROUTE}/{session_id}", headers=cookie(user.token))
    if response.status_code == 503:
        assert_rest_error(response, 503, "unavailable")
    else:
        assert response.status_code == 204, response.text
    return response.status_code


async def refused(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get(ROUTE, headers=cookie(token))
    assert response.status_code in (200, 401, 503), response.text
    return response.status_code == 401


async def test_the_page_is_served_through_the_sentinels(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    user = await signed_in(resources)
    assert await page(client, user) == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["redis"] == "ok", ready.text


async def test_the_command_finds_the_master_through_the_sentinels(
    base_settings: Settings, sentinel_group: SentinelGroup
) -> None:
    sentinels = ",".join(f"{host}:{port}" for host, port in sentinel_group.addresses)
    env = {"REDIS_MODE": "sentinel", "REDIS_SENTINELS": sentinels, "REDIS_URL": "redis://x/0"}
    found = await run_cli(
        base_settings, "check", **env, REDIS_SENTINEL_SERVICE=SentinelGroup.SERVICE
    )
    assert found.code == 0, found
    lost = await run_cli(base_settings, "check", **env, REDIS_SENTINEL_SERVICE="no-such")
    assert lost.code == 1 and "the sentinels' master" in lost.stderr, lost


async def test_what_a_failover_raises_is_a_redis_outage(
    settings: Settings, sentinel_group: SentinelGroup
) -> None:
    # No master of that name: the sentinels answer, and name none.
    unknown = redis_client(settings.model_copy(update={"redis_sentinel_service": "no-such"}))
    # No sentinel answers (refused).
    nobody = redis_client(settings.model_copy(update={"redis_sentinels": [("127.0.0.1", 1)]}))
    # A write to the replica, as to a master demoted a moment ago.
    replica = redis_client(
        settings.model_copy(
            update={"redis_mode": "standalone", "redis_url": sentinel_group.replica().url}
        )
    )
    try:
        for client in (unknown, nobody):
            with pytest.raises(MasterNotFoundError) as raised:
                await client.ping()
            assert outage_of(raised.value) == "redis"
        with pytest.raises(ReadOnlyError) as readonly:
            await replica.set("test-sentinel-readonly", "1")
        assert outage_of(readonly.value) == "redis"
        assert "read only replica" in describe_outage(readonly.value)
        await _write_to_a_demoted_master(settings, sentinel_group)
    finally:
        for client in (unknown, nobody, replica):
            await client.aclose()


async def _write_to_a_demoted_master(settings: Settings, group: SentinelGroup) -> None:
    """A connection of the sentinel client still open to a master since demoted (here: opened
    to the replica) has its write refused as a ConnectionError, and is dropped."""
    client = redis_client(settings)
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.disconnect()
        await connection.connect_to(("127.0.0.1", group.replica().port))  # type: ignore[attr-defined]
        await connection.send_command("SET", "test-sentinel-demoted", "1")
        with pytest.raises(RedisConnectionError, match="now a slave") as raised:
            await connection.read_response()
        assert outage_of(raised.value) == "redis"
        assert not connection.is_connected
    finally:
        await pool.release(connection)
        await client.aclose()


async def test_concurrent_lookups_of_the_master_keep_every_sentinel(
    settings: Settings, sentinel_group: SentinelGroup
) -> None:
    # Every connection opened at once after a failover asks the sentinels, passing over those
    # that do not answer; none may be lost from the list.
    sentinels = [("127.0.0.1", 1), *sentinel_group.addresses]
    client = redis_client(settings.model_copy(update={"redis_sentinels": sentinels}))
    try:
        manager = client.connection_pool.sentinel_manager  # type: ignore[attr-defined]
        master = sentinel_group.master().port
        lookups = (manager.discover_master(SentinelGroup.SERVICE) for _ in range(20))
        assert {port for _, port in await asyncio.gather(*lookups)} == {master}
        ports = sorted(s.connection_pool.connection_kwargs["port"] for s in manager.sentinels)
        assert ports == sorted(port for _, port in sentinels)
    finally:
        await client.aclose()


async def test_a_master_short_of_replicas_is_a_redis_outage(base_settings: Settings) -> None:
    # min-replicas-to-write: a master left without its replica (killed in a failover) refuses
    # writes with NOREPLICAS, an error redis-py has no class for.
    with RedisServer("--min-replicas-to-write", "1") as lonely:
        client = redis_client(base_settings.model_copy(update={"redis_url": lonely.url}))
        try:
            with pytest.raises(ResponseError) as raised:
                await client.set("test-sentinel-noreplicas", "1")
        finally:
            await client.aclose()
    assert str(raised.value).startswith("NOREPLICAS")
    assert outage_of(raised.value) == "redis"


async def test_an_end_no_replica_acknowledges_answers_503_and_can_be_repeated(
    client: httpx.AsyncClient, resources: Resources, sentinel_group: SentinelGroup
) -> None:
    sentinel_group.wait_whole()
    user = await signed_in(resources)
    _, other = user.other()
    with sentinel_group.replica().paused():
        assert await revoke(client, user, other) == 503
    # Once the replica has it, the same revoke goes through.
    await _eventually(lambda: _revoked(client, user, other), "the revoke is repeated")
    sentinel_group.wait_whole()


async def test_a_failover_is_followed_without_a_restart(
    client: httpx.AsyncClient, resources: Resources, sentinel_group: SentinelGroup
) -> None:
    sentinel_group.wait_whole()
    readers = [await signed_in(resources) for _ in range(3)]
    # A session revoked before the failover (the service answered 204).
    revoker = await signed_in(resources)
    revoked_agent, revoked_id = revoker.other()
    assert await revoke(client, revoker, revoked_id) == 204
    revoked_token = revoker.tokens[revoked_agent]
    assert await refused(client, revoked_token)

    traffic = Traffic(client, readers)
    killed: RedisServer | None = None
    try:
        async with traffic.running():
            await traffic.wait(lambda: traffic.count(200) >= 10, "answers before the kill")
            killed = sentinel_group.kill_master()
            killed_at = time.monotonic()
            await traffic.wait(lambda: traffic.recovered(since=killed_at), "200 again")
        assert set(traffic.statuses()) <= {200, 503}
        assert traffic.first_200_after(killed_at) - killed_at < PATIENCE

        # Revoked before, refused after; the revoker's own session still works.
        assert await refused(client, revoked_token)
        assert await page(client, revoker.without(revoked_agent)) == 200

        # With the only replica gone, an end cannot be made safe: 503 until one is back.
        reader = readers[0]
        _, other = reader.other()
        assert await revoke(client, reader, other) == 503
        sentinel_group.rejoin(killed)
        killed = None
        await _eventually(lambda: _revoked(client, reader, other), "a revoke after the rejoin")
    finally:
        if killed is not None:  # leave the group whole for later tests
            sentinel_group.rejoin(killed)


async def test_a_demoted_master_is_left_for_the_new_one(
    client: httpx.AsyncClient, resources: Resources, sentinel_group: SentinelGroup
) -> None:
    """A failover the sentinels are asked for (SENTINEL FAILOVER): the old master, alive, is made
    a replica; pages go on (200, or 503 for a moment), then ends are made safe on the new one."""
    sentinel_group.wait_whole()
    readers = [await signed_in(resources) for _ in range(3)]
    old = sentinel_group.master()
    traffic = Traffic(client, readers)
    async with traffic.running():
        await traffic.wait(lambda: traffic.count(200) >= 10, "answers before the failover")
        sentinel_group.sentinels[0].cli("sentinel", "failover", SentinelGroup.SERVICE)
        asked_at = time.monotonic()
        assert await asyncio.to_thread(sentinel_group.wait_failover, old) is not old
        await traffic.wait(lambda: traffic.recovered(since=asked_at), "200 after the failover")
    assert set(traffic.statuses()) <= {200, 503}
    sentinel_group.wait_whole()
    reader = readers[0]
    _, other = reader.other()
    await _eventually(lambda: _revoked(client, reader, other), "a revoke on the new master")
    assert await page(client, reader.without(reader.other()[0])) == 200


class Traffic:
    """Pages of several users requested in a loop, every answer checked (see page()) and kept,
    until stopped."""

    WORKERS = 4

    def __init__(self, client: httpx.AsyncClient, users: list[SignedIn]) -> None:
        self.client = client
        self.users = users
        self.answers: list[tuple[float, int]] = []
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self, worker: int) -> None:
        turn = worker
        while not self._stop:
            status = await page(self.client, self.users[turn % len(self.users)])
            self.answers.append((time.monotonic(), status))
            turn += 1
            await asyncio.sleep(0.01)  # pacing only

    def running(self) -> _Running:
        return _Running(self)

    def count(self, status: int) -> int:
        return sum(1 for _, s in self.answers if s == status)

    def statuses(self) -> list[int]:
        return [s for _, s in self.answers]

    def recovered(self, *, since: float, run: int = 20) -> bool:
        """The last `run` answers all came after `since`, and all were 200."""
        last = self.answers[-run:]
        return len(last) == run and all(t > since and s == 200 for t, s in last)

    def first_200_after(self, moment: float) -> float:
        return next(t for t, s in self.answers if t > moment and s == 200)

    async def wait(self, done: object, what: str) -> None:
        assert callable(done)
        deadline = time.monotonic() + PATIENCE
        while not done():
            for task in self._tasks:
                if task.done():
                    task.result()  # a failed check: raise it now
                    raise AssertionError("a traffic worker stopped")
            assert time.monotonic() < deadline, f"{what}: not within {PATIENCE:.0f} s"
            await asyncio.sleep(0.05)


class _Running:
    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic

    async def __aenter__(self) -> Traffic:
        self.traffic._tasks = [
            asyncio.create_task(self.traffic._loop(i)) for i in range(Traffic.WORKERS)
        ]
        return self.traffic

    async def __aexit__(self, *exc: object) -> None:
        self.traffic._stop = True
        await asyncio.gather(*self.traffic._tasks)


async def _revoked(client: httpx.AsyncClient, user: SignedIn, session_id: str) -> bool:
    return await revoke(client, user, session_id) == 204


async def _eventually(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + PATIENCE
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {PATIENCE:.0f} s"
        await asyncio.sleep(0.1)

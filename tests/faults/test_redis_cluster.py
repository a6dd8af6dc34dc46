"""A Redis Cluster losing a master: while it is down, pages answer 503 (never 500, never
another user's data); once it is back, with its data, they answer 200 again without restarting
the service, and a session revoked before the loss stays revoked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.exceptions import RedisClusterException

from sessions_config.resources import Resources, open_resources
from sessions_config.settings import Settings
from store.errors import outage_of
from tests.app_client import ROUTE, cookie
from tests.conftest import Users
from tests.infra import RedisServer
from tests.redis_cluster import RedisCluster
from tests.servers import serve

PATIENCE = 30.0  # seconds the service may take to answer 200 again once the node is back


@pytest.fixture(scope="module")
def durable_cluster() -> Iterator[RedisCluster]:
    """A cluster of its own (this test breaks it), whose nodes keep their data across a restart
    (an append-only file, written at every command)."""
    with RedisCluster(options=("--appendonly", "yes", "--appendfsync", "always")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster_settings(base_settings: Settings, durable_cluster: RedisCluster) -> Settings:
    return base_settings.model_copy(
        update={
            "redis_url": durable_cluster.url,
            "redis_mode": "cluster",
            "storage_timeout": 1.0,
            "storage_connect_timeout": 0.5,
            "pool_acquire_timeout": 0.5,
            "request_timeout": 5.0,
        }
    )


@pytest.fixture(scope="module")
async def cluster_resources(cluster_settings: Settings, database: str) -> AsyncIterator[Resources]:
    async with open_resources(cluster_settings, geo=False) as res:
        yield res


@pytest.fixture(scope="module")
def cluster_app(cluster_settings: Settings, cluster_resources: Resources) -> Iterator[str]:
    with serve(cluster_settings) as url:
        yield url


def node_of(cluster: RedisCluster, key: str) -> RedisServer:
    """The cluster's node that holds this key's slot."""
    slot = int(cluster.nodes[0].cli("CLUSTER", "KEYSLOT", key))
    for line in cluster.nodes[0].cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for span in fields[8:]:
            low, _, high = span.partition("-")
            if int(low) <= slot <= int(high or low):
                return next(node for node in cluster.nodes if node.port == port)
    raise AssertionError(f"no node holds slot {slot}")


async def test_a_lost_master_gives_503_then_200_once_it_is_back(
    durable_cluster: RedisCluster, cluster_resources: Resources, cluster_app: str
) -> None:
    users = Users(cluster_resources)
    keys = cluster_resources.store.keys
    user_id = users.new_id()
    me = await users.session(user_id, ip="81.2.69.142")
    revoked = await users.session(user_id, ip="8.8.8.8")
    victim = node_of(durable_cluster, keys.user_sessions(user_id))

    async with httpx.AsyncClient(base_url=cluster_app, timeout=20) as client:
        answer = await client.delete(f"{ROUTE}/{revoked.record.id}", headers=cookie(me.token))
        assert answer.status_code == 204, answer.text
        page = await client.get(ROUTE, headers=cookie(me.token))
        assert page.status_code == 200, page.text
        mine = page.json()

        victim.kill()
        statuses = set()
        try:
            for _ in range(10):
                answer = await client.get(ROUTE, headers=cookie(me.token))
                statuses.add(answer.status_code)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "unavailable"
        finally:
            victim.start()
        assert statuses == {503}

        deadline = time.monotonic() + PATIENCE
        while True:
            answer = await client.get(ROUTE, headers=cookie(me.token))
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 200:
                break
            assert time.monotonic() < deadline, "still 503 after the node came back"
            await asyncio.sleep(0.2)
        assert answer.json()["sessions"] == mine["sessions"]
        gone = await client.get(ROUTE, headers=cookie(revoked.token))
        assert gone.status_code == 401, gone.text


async def test_a_cluster_with_no_reachable_node_gives_503(
    base_settings: Settings, database: str
) -> None:
    """REDIS_URL naming a node where nothing listens: the client cannot learn the cluster."""
    nowhere = base_settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "redis_mode": "cluster"}
    )
    with serve(nowhere) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            page = await client.get(ROUTE, headers=cookie("a" * 43))
            assert page.status_code == 503, page.text
            assert page.json()["error"]["code"] == "unavailable"
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text


async def test_the_cluster_client_s_unreachable_error_counts_as_a_redis_outage() -> None:
    """What redis-py raises when no node of REDIS_URL answers: its generic cluster error (which
    also means misuse, a bug), caused by the connection's error, which makes it an outage."""
    client = RedisClusterClient.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedisClusterException, match="cannot be connected") as raised:
            await client.get("anything")
    finally:
        await client.aclose()
    assert outage_of(raised.value) == "redis"
    assert outage_of(RedisClusterException("some other misuse")) is None

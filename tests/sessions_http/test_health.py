"""/healthz answers while the process serves; /readyz also says whether Postgres and Redis answer
(here with both up, and with Redis down)."""

from __future__ import annotations

import httpx

from tests.app_client import assert_ready


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_postgres_and_redis_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["postgres"] == "ok"
    assert body["redis"] == "ok"
    assert_ready(response)


async def test_redis_down_readyz_is_503_naming_redis(down_client: httpx.AsyncClient) -> None:
    response = await down_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "unavailable"
    assert body["postgres"] == "ok"
    assert response.headers["cache-control"] == "no-store"


async def test_redis_down_healthz_is_still_200(down_client: httpx.AsyncClient) -> None:
    response = await down_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

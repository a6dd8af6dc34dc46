"""The app served under a root path (`uvicorn --root-path /api`, behind a proxy that takes
/api/... off the path before forwarding): its routes answer, and every HTTP-level error of the
GraphQL endpoint keeps the GraphQL shape, as it has at the root. uvicorn puts the root path back
in front of each request's path (ASGI's `path` includes `root_path`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sessions_config.settings import Settings
from tests.app_client import ME, ROUTE, assert_healthy
from tests.http_errors import assert_graphql_http_error, assert_rest_error
from tests.servers import serve

ROOT = "/api"


@pytest.fixture(scope="module")
def rooted_server(base_settings: Settings, database: str, redis_keyspace: str) -> Iterator[str]:
    with serve(base_settings, root_path=ROOT) as url:
        yield url


@pytest.fixture
async def rooted(rooted_server: str) -> AsyncIterator[httpx.AsyncClient]:
    # As the proxy forwards them: without the root path, which uvicorn puts back.
    async with httpx.AsyncClient(base_url=rooted_server, timeout=20) as c:
        yield c


async def test_the_routes_answer_under_the_root_path(rooted: httpx.AsyncClient) -> None:
    assert_healthy(await rooted.get("/healthz"))
    answer = await rooted.post("/graphql", json={"query": ME})
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert_rest_error(await rooted.get(ROUTE), 401, "unauthenticated")


async def test_graphql_endpoint_errors_keep_their_shape_under_the_root_path(
    rooted: httpx.AsyncClient,
) -> None:
    unsupported = await rooted.post(
        "/graphql", content=b"{ me { id } }", headers={"content-type": "text/plain"}
    )
    assert_graphql_http_error(unsupported, 415, "UNSUPPORTED_MEDIA_TYPE")
    put = await rooted.put("/graphql", json={"query": ME})
    assert_graphql_http_error(put, 405, "METHOD_NOT_ALLOWED")
    forged = await rooted.post(
        "/graphql",
        json={"query": "mutation { revokeOtherSessions }"},
        headers={"origin": "https://evil.example"},
    )
    assert_graphql_http_error(forged, 403, "FORBIDDEN_ORIGIN")


async def test_other_paths_keep_the_rest_shape_under_the_root_path(
    rooted: httpx.AsyncClient,
) -> None:
    assert_rest_error(await rooted.get("/graphql-not"), 404, "not_found")
    assert_rest_error(await rooted.put(ROUTE), 405, "method_not_allowed")

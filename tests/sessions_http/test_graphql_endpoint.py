"""/graphql as the GraphQL-over-HTTP specification asks (media types, status codes, limits, an
answer while Redis is down), and GraphiQL served from the app itself."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
import pytest

from graph.schema import MAX_ALIASES
from sessions_config.settings import Settings
from sessions_http.app import create_app
from tests.app_client import (
    GRAPHQL_RESPONSE,
    JSON,
    ME,
    assert_still_serving,
    cookie,
    media_type,
)
from tests.http_errors import assert_graphql_http_error, assert_rest_error

pytestmark = pytest.mark.redis_topologies


async def post(
    client: httpx.AsyncClient, body: Any, *, accept: str | None = GRAPHQL_RESPONSE
) -> httpx.Response:
    headers = {} if accept is None else {"accept": accept}
    return await client.post("/graphql", json=body, headers=headers)


# -- media types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (JSON, JSON),
        ("*/*", JSON),
    ],
)
async def test_response_media_type_follows_accept(
    client: httpx.AsyncClient, accept: str, expected: str
) -> None:
    response = await post(client, {"query": ME}, accept=accept)
    assert response.status_code == 200
    assert media_type(response) == expected
    assert response.json()["data"] == {"me": None}


async def test_no_accept_header_gets_json(client: httpx.AsyncClient) -> None:
    request = client.build_request("POST", "/graphql", json={"query": ME})
    del request.headers["accept"]
    response = await client.send(request)
    assert response.status_code == 200
    assert media_type(response) == JSON


async def test_unacceptable_media_type_is_406(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": ME}, accept="text/csv")
    assert response.status_code == 406
    assert_graphql_http_error(response, 406, "NOT_ACCEPTABLE")


# -- requests that cannot be executed ---------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("{ me { id }", id="syntax"),
        pytest.param("{ me { noSuchField } }", id="validation"),
        pytest.param("{ me }", id="missing-selection"),
    ],
)
@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 400), (JSON, 200)])
async def test_unexecutable_document_status_depends_on_media_type(
    client: httpx.AsyncClient, query: str, accept: str, status: int
) -> None:
    response = await post(client, {"query": query}, accept=accept)
    assert response.status_code == status
    assert media_type(response) == accept
    body = response.json()
    assert body["errors"]
    assert "data" not in body


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_post_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/graphql",
        content=json.dumps({"query": ME}),
        headers={"content-type": content_type, "accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 415
    assert_graphql_http_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_post_without_content_type_is_415(client: httpx.AsyncClient) -> None:
    request = client.build_request("POST", "/graphql", content=json.dumps({"query": ME}))
    assert "content-type" not in request.headers
    response = await client.send(request)
    assert response.status_code == 415
    assert_graphql_http_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"query": "{ me { id } }"', id="invalid-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"\xff\xfe not utf-8", id="not-utf8"),
        pytest.param(json.dumps([{"query": ME}]).encode(), id="array"),
        pytest.param(json.dumps("{ me { id } }").encode(), id="string"),
        pytest.param(b"{}", id="missing-query"),
        pytest.param(json.dumps({"query": ""}).encode(), id="empty-query"),
        pytest.param(json.dumps({"query": 42}).encode(), id="query-not-string"),
        pytest.param(json.dumps({"query": ME, "variables": [1]}).encode(), id="variables-list"),
        pytest.param(json.dumps({"query": ME, "variables": 7}).encode(), id="variables-number"),
        pytest.param(json.dumps({"query": ME, "variables": "[1]"}).encode(), id="variables-str"),
        pytest.param(json.dumps({"query": ME, "operationName": 3}).encode(), id="opname-number"),
    ],
)
async def test_malformed_request_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/graphql", content=raw, headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400
    assert response.json()["errors"]
    assert_graphql_http_error(response, 400, "BAD_REQUEST")


async def test_variables_of_the_wrong_type_are_400(client: httpx.AsyncClient) -> None:
    query = "query ($n: Int) { me { history(first: $n) { edges { cursor } } } }"
    response = await post(client, {"query": query, "variables": {"n": "many"}})
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]
    assert "data" not in body


# -- limits -----------------------------------------------------------------------------------


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    body = {"query": ME, "padding": "x" * (64 * 1024)}
    response = await post(client, body)
    assert response.status_code == 413
    assert_graphql_http_error(response, 413, "PAYLOAD_TOO_LARGE")
    await assert_still_serving(client)


async def test_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    query = "# " + "x" * (60 * 1024) + "\n" + ME
    response = await post(client, {"query": query})
    assert response.status_code == 200
    assert response.json()["data"] == {"me": None}


async def test_too_many_tokens_is_refused(client: httpx.AsyncClient) -> None:
    query = "{ me { " + " ".join(["id"] * 2100) + " } }"
    assert len(json.dumps({"query": query})) < 64 * 1024
    response = await post(client, {"query": query})
    assert response.status_code == 400
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert body["errors"] and "data" not in body
    assert any("token" in e["message"].lower() for e in body["errors"])
    await assert_still_serving(client)


async def test_too_deep_is_refused(client: httpx.AsyncClient) -> None:
    inner = "city"
    for name in ["geo", "node", "edges", "history", "me"] + [f"f{i}" for i in range(8)]:
        inner = f"{name} {{ {inner} }}"
    response = await post(client, {"query": "{ " + inner + " }"})
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert any("depth" in e["message"].lower() for e in body["errors"])
    await assert_still_serving(client)


async def test_deep_but_allowed_query_runs(client: httpx.AsyncClient) -> None:
    query = "{ me { history { edges { node { geo { city } } } } } }"
    response = await post(client, {"query": query})
    assert response.status_code == 200
    assert response.json()["data"] == {"me": None}


async def test_too_many_aliases_is_refused(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(MAX_ALIASES + 1)) + " }"
    response = await post(client, {"query": query})
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert any("alias" in e["message"].lower() for e in body["errors"])
    await assert_still_serving(client)


async def test_aliases_up_to_the_limit_are_allowed(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(MAX_ALIASES)) + " }"
    response = await post(client, {"query": query})
    assert response.status_code == 200
    assert response.json()["data"] == {f"a{i}": None for i in range(MAX_ALIASES)}


async def test_depth_and_aliases_count_through_fragments(client: httpx.AsyncClient) -> None:
    # Depth 11 (one over the limit), written with a fragment in the middle.
    deep = (
        "{ me { history { edges { node { ...Deeper } } } } } "
        "fragment Deeper on History { geo { f1 { f2 { f3 { f4 { f5 { f6 { city } } } } } } } }"
    )
    # Every spread of a fragment counts its aliases again: 4 x 11 = 44 > 40.
    aliased = " ".join(f"a{i}: id" for i in range(11))
    many = "{ me { ...A ...A ...A ...A } } fragment A on Me { " + aliased + " }"
    for query, says in ((deep, "depth"), (many, "44 aliases")):
        response = await post(client, {"query": query})
        assert response.status_code == 400, response.text
        assert any(says in e["message"] for e in response.json()["errors"]), response.text


@pytest.mark.parametrize("aliased", [False, True])
async def test_fragments_spread_into_fragments_are_judged_without_walking_every_path(
    client: httpx.AsyncClient, aliased: bool
) -> None:
    """14 levels of 4 spreads each is 4**14 (268 million) paths in a few hundred bytes."""
    levels = 14
    if aliased:
        spread = lambda i: " ".join(f"a{j}: me {{ ...F{i + 1} }}" for j in range(4))  # noqa: E731
    else:
        spread = lambda i: " ".join([f"...F{i + 1}"] * 4)  # noqa: E731
    fragments = " ".join(
        f"fragment F{i} on {'Me' if aliased else 'Query'} {{ {spread(i)} }}" for i in range(levels)
    )
    last = f"fragment F{levels} on {'Me' if aliased else 'Query'} {{ __typename }}"
    query = ("{ me { ...F0 } } " if aliased else "{ ...F0 } ") + fragments + " " + last
    # The client's timeout bounds a hang; it is not a speed check.
    response = await post(client, {"query": query})
    if aliased:
        assert response.status_code == 400
        assert any("aliases found" in e["message"] for e in response.json()["errors"])
    else:
        assert response.status_code == 200
        assert response.json()["data"] == {"__typename": "Query"}
    await assert_still_serving(client)


async def test_inline_fragments_nested_past_pythons_recursion_are_refused_as_too_deep(
    client: httpx.AsyncClient,
) -> None:
    # Each fragment nests 100 inline fragments and spreads the next one at the bottom: within
    # the parser's own nesting guard, but 600 levels for whoever walks through the spreads.
    # About 1850 tokens, under the token limit.
    count, levels = 6, 100

    def fragment(i: int) -> str:
        bottom = f"...F{i + 1}" if i + 1 < count else "__typename"
        return f"fragment F{i} on Query {{ " + "... { " * levels + bottom + " }" * levels + " }"

    query = "{ ...F0 } " + " ".join(fragment(i) for i in range(count))
    response = await post(client, {"query": query})
    assert response.status_code == 400, response.text[:300]
    messages = [e["message"] for e in response.json()["errors"]]
    assert any("exceeds maximum operation depth" in m for m in messages), messages
    await assert_still_serving(client)


async def test_graphiql_introspection_passes_the_limits(client: httpx.AsyncClient) -> None:
    from graphql import get_introspection_query

    response = await post(client, {"query": get_introspection_query(descriptions=True)})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"


# -- GET, GraphiQL, other methods -------------------------------------------------------------


async def test_get_with_query_executes(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{me{id}}"})
    assert response.status_code == 200
    assert media_type(response) == JSON
    body = response.json()
    assert body["data"] == {"me": None}
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_get_with_query_and_variables(client: httpx.AsyncClient) -> None:
    query = "query ($n: Int) { me { history(first: $n) { edges { cursor } } } }"
    response = await client.get(
        "/graphql",
        params={"query": query, "variables": json.dumps({"n": 3})},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"me": None}


async def test_browser_get_serves_graphiql_from_the_app(client: httpx.AsyncClient) -> None:
    page = await client.get(
        "/graphql", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert page.status_code == 200
    assert media_type(page) == "text/html"
    html = page.text
    assert "/static/graphiql/graphiql.min.js" in html
    assert "http://" not in html and "https://" not in html, "GraphiQL must not need a CDN"

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/graphiql/graphiql.min.css" in assets
    assert any("react" in a for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset
    for name, kind in [
        ("graphiql.min.js", "javascript"),
        ("react.production.min.js", "javascript"),
        ("react-dom.production.min.js", "javascript"),
        ("graphiql.min.css", "text/css"),
    ]:
        response = await client.get(f"/static/graphiql/{name}")
        assert response.status_code == 200, name
        assert kind in response.headers["content-type"], name
        assert len(response.content) > 1000, name


async def test_get_without_query_and_without_html_accept_is_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql", headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400
    assert "query" in assert_graphql_http_error(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"query": "query A { me { id } }", "operationName": "Nope"}, id="unknown-op"),
        pytest.param({"query": "subscription { me { id } }"}, id="subscription"),
        # The spec asks for operationName here; running the first one would be a guess.
        pytest.param({"query": "query A { me { id } } query B { me { id } }"}, id="unnamed-of-two"),
    ],
)
@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 400), (JSON, 200)])
async def test_operation_that_cannot_run_is_a_request_error_not_500(
    client: httpx.AsyncClient, body: dict[str, Any], accept: str, status: int
) -> None:
    response = await post(client, body, accept=accept)
    assert response.status_code == status
    assert media_type(response) == accept
    answer = response.json()
    assert answer["errors"] and "data" not in answer


async def test_several_operations_without_a_name_say_what_is_missing(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, {"query": "query A { me { id } } query B { me { id } }"})
    assert response.status_code == 400
    assert "operationName" in response.json()["errors"][0]["message"]


async def test_get_with_a_mutation_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { signOut }"})
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert response.headers["cache-control"] == "no-store"
    assert_graphql_http_error(response, 405, "METHOD_NOT_ALLOWED")


async def test_get_with_named_operation(client: httpx.AsyncClient) -> None:
    query = "query A { me { id } } query B { me { id } }"
    response = await client.get("/graphql", params={"query": query, "operationName": "B"})
    assert response.status_code == 200
    assert response.json()["data"] == {"me": None}


async def test_put_is_405(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": ME})
    assert response.status_code == 405
    assert_graphql_http_error(response, 405, "METHOD_NOT_ALLOWED")


def allowed_methods(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_every_405_of_graphql_has_one_shape(client: httpx.AsyncClient, accept: str) -> None:
    """A method the route does not take, and a mutation sent with GET: the same GraphQL shape
    and code, each with an Allow header naming what would have worked."""
    put = await client.put("/graphql", json={"query": ME}, headers={"accept": accept})
    get = await client.get(
        "/graphql", params={"query": "mutation { revokeOtherSessions }"}, headers={"accept": accept}
    )
    for response in (put, get):
        assert_graphql_http_error(response, 405, "METHOD_NOT_ALLOWED")
    assert allowed_methods(put) == {"GET", "HEAD", "POST"}
    assert allowed_methods(get) == {"POST"}


@pytest.mark.parametrize("path", ["/graphql", "/v1/users/me/sessions"])
async def test_a_failure_of_our_own_answers_500_in_the_paths_shape(
    settings: Settings, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The app without its lifespan has no resources: any route that needs them fails with a
    bug of ours. The client learns nothing of it but a 500 in the shape of the path."""
    transport = httpx.ASGITransport(app=create_app(settings), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as app:
        response = await app.get(path, params={"query": ME})
    if path == "/graphql":
        message = assert_graphql_http_error(response, 500, "INTERNAL")
    else:
        message = assert_rest_error(response, 500, "internal")
    assert message == "The request could not be completed."
    assert "state" not in response.text and "Traceback" not in response.text
    assert [r.levelname for r in caplog.records if r.name == "sessions_http.app"] == ["ERROR"]


# -- caching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        pytest.param("POST", {"json": {"query": ME}}, id="ok"),
        pytest.param("POST", {"json": {"query": ME}, "headers": {"accept": JSON}}, id="ok-json"),
        pytest.param("POST", {"json": {"query": "{ me { id }"}}, id="syntax-error"),
        pytest.param("POST", {"json": [1]}, id="bad-request"),
        pytest.param("POST", {"json": {"query": ME}, "headers": {"accept": "text/csv"}}, id="406"),
        pytest.param("POST", {"content": "{ me { id } }"}, id="415"),
        pytest.param("POST", {"json": {"query": ME, "p": "x" * 70_000}}, id="413"),
        pytest.param("GET", {"params": {"query": ME}}, id="get"),
        pytest.param("GET", {"headers": {"accept": "text/html"}}, id="graphiql"),
    ],
)
async def test_every_graphql_response_is_no_store(
    client: httpx.AsyncClient, method: str, kwargs: dict[str, Any]
) -> None:
    headers = {"accept": GRAPHQL_RESPONSE, **kwargs.pop("headers", {})}
    response = await client.request(method, "/graphql", headers=headers, **kwargs)
    assert response.headers.get("cache-control") == "no-store", response.status_code


async def test_redis_down_graphql_answers_with_an_error(down_client: httpx.AsyncClient) -> None:
    token = secrets.token_urlsafe(32)
    response = await down_client.post(
        "/graphql",
        json={"query": ME},
        headers={**cookie(token), "accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"me": None}
    assert body["errors"]
    # An outage is not the client's fault and reveals no internals.
    assert body["errors"][0].get("extensions", {}).get("code") != "UNAUTHENTICATED"
    assert "6379" not in response.text and "127.0.0.1:1" not in response.text


async def test_a_field_error_while_executing_is_not_a_request_error(
    client: httpx.AsyncClient, users: Any
) -> None:
    """A mutation whose only field fails executed all the same: 200, with `data: null`."""
    created = await users.session(users.new_id())
    response = await client.post(
        "/graphql",
        json={"query": 'mutation { revokeSession(id: "00000000-0000-4000-8000-000000000000") }'},
        headers={"accept": GRAPHQL_RESPONSE, **cookie(created.token)},
    )
    assert response.status_code == 200
    body = response.json()
    assert "data" in body and body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"

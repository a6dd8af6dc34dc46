"""How /graphql reads a request: the media type that an Accept header's q-values choose, and bodies
built to break a parser (JSON nested past Python's recursion limit, lone surrogates, an Int literal
too long to read): each is the client's mistake (400, with a message), never a crash, and the app
goes on serving."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.app_client import GRAPHQL_RESPONSE, JSON, ME, assert_still_serving, media_type

# -- deep nesting ----------------------------------------------------------------------------------


# Under the 64 KiB body limit, so the nesting itself is what must be refused (not the size).
DEEP = 30_000  # 60 KB when balanced


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * DEEP, id="body-opening-brackets"),
        pytest.param("[" * DEEP + "]" * DEEP, id="body-balanced"),
        pytest.param(
            '{"query": "{ me { id } }", "variables": {"a": ' + "[" * DEEP + "]" * DEEP + "}}",
            id="variables-object",
        ),
        pytest.param(
            json.dumps({"query": ME, "variables": "[" * DEEP + "]" * DEEP}),
            id="variables-string",
        ),
    ],
)
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, body: str) -> None:
    assert len(body.encode()) <= 64 * 1024
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400, response.text
    assert media_type(response) == JSON
    assert response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_deeply_nested_variables_on_get_are_400(client: httpx.AsyncClient) -> None:
    # Deeper than Python's recursion limit (1000); short enough for a URL (HTTP_MAX_URL_BYTES).
    depth = 1200
    response = await client.get(
        "/graphql",
        params={"query": ME, "variables": "[" * depth + "]" * depth},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_nested_variables_that_parse_are_refused_by_graphql_not_crashing(
    client: httpx.AsyncClient,
) -> None:
    """Nesting that JSON accepts, given to a variable of a scalar type: a GraphQL error."""
    depth = 900
    query = "query ($after: String) { me { history(after: $after) { pageInfo { hasNextPage } } } }"
    body = json.dumps({"query": query, "variables": {"after": "x"}}).replace(
        '"x"', "[" * depth + "]" * depth
    )
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"]
    await assert_still_serving(client)


# -- unreadable text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"query": "query A { me { id } }", "operationName": "\\ud800"}', id="name"),
        pytest.param(b'{"query": "{ me { id } }", "variables": {"x": "\\udfff"}}', id="variables"),
        pytest.param(b'{"query": "{ me(x: \\"\\ud800\\") { id } }"}', id="query"),
    ],
)
async def test_lone_surrogates_are_a_bad_request_not_a_500(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"content-type": JSON, "accept": JSON}
    )
    assert response.status_code == 400, response.text
    assert "Unicode" in response.json()["errors"][0]["message"]
    await assert_still_serving(client)


async def test_an_int_literal_too_long_to_read_is_the_clients_mistake(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    query = "{ me { history(first: " + "9" * 5000 + ") { edges { cursor } } } }"
    with caplog.at_level(logging.ERROR):
        response = await client.post(
            "/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE}
        )
    assert response.status_code == 400
    message = response.json()["errors"][0]["message"]
    assert message != "Unexpected error." and "Int" in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- Accept ----------------------------------------------------------------------------------------


async def test_accept_quality_values_choose_the_media_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": ME},
        headers={"accept": f"{JSON};q=1, {GRAPHQL_RESPONSE};q=0.1"},
    )
    assert response.status_code == 200
    assert media_type(response) == JSON
    assert response.json()["data"] == {"me": None}

    response = await client.post(
        "/graphql", json={"query": ME}, headers={"accept": f"{GRAPHQL_RESPONSE};q=0"}
    )
    assert response.status_code == 406
    assert response.json()["errors"]


# -- extensions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extensions", ["text", 1, [], True], ids=["string", "number", "list", "bool"]
)
@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_extensions_that_are_not_an_object_are_400(
    client: httpx.AsyncClient, extensions: object, accept: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": ME, "extensions": extensions},
        headers={"accept": accept},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"].startswith("`extensions`")


async def test_extensions_that_are_an_object_are_accepted(client: httpx.AsyncClient) -> None:
    posted = await client.post("/graphql", json={"query": ME, "extensions": {"any": 1}})
    assert posted.status_code == 200, posted.text
    got = await client.get("/graphql", params={"query": ME, "extensions": '{"any": 1}'})
    assert got.status_code == 200, got.text
    refused = await client.get("/graphql", params={"query": ME, "extensions": "1"})
    assert refused.status_code == 400, refused.text


@pytest.mark.parametrize("name", [0, 1, False, True, [], {}], ids=repr)
async def test_an_operation_name_that_is_not_a_string_is_400(
    client: httpx.AsyncClient, name: object
) -> None:
    response = await client.post("/graphql", json={"query": ME, "operationName": name})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"] == "`operationName` must be a string."

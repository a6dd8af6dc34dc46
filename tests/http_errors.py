"""Assertions on the two shapes of an HTTP-level error (sessions_http/responses.py): GraphQL's on
/graphql, `{"error": {"code", "message"}}` everywhere else. Both carry `Cache-Control: no-store`."""

from __future__ import annotations

import httpx


def _assert_json_no_store(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert response.headers["cache-control"] == "no-store"


def assert_rest_error(response: httpx.Response, status: int, code: str) -> str:
    """The REST shape, exactly; returns the message."""
    _assert_json_no_store(response, status)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message, body
    return message


def assert_graphql_http_error(response: httpx.Response, status: int, code: str) -> str:
    """The /graphql shape, exactly: one error, with a message and `extensions.code`, and no
    `data` (nothing was executed); returns the message."""
    _assert_json_no_store(response, status)
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1, body
    [error] = body["errors"]
    assert set(error) == {"message", "extensions"} and error["extensions"] == {"code": code}, body
    assert isinstance(error["message"], str) and error["message"], body
    return str(error["message"])

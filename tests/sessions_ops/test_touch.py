"""`sessions-api sessions touch`: sets a session's lastSeenAt to now for writers, prints it
without the token, and never brings an ended session back."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import httpx

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from tests.app_client import by_id, fresh_ip, graphql_data
from tests.cli_runner import Result, run_cli
from tests.conftest import Users
from tests.last_seen import SESSIONS_QUERY, assert_about_now, stored_last_seen


async def touch(settings: Settings, token: str) -> Result:
    """`sessions-api sessions touch --token TOKEN`."""
    return await run_cli(settings, "sessions", "touch", "--token", token)


async def test_cli_touch_sets_last_seen_at(
    client: httpx.AsyncClient, users: Users, resources: Resources, base_settings: Settings
) -> None:
    uid = users.new_id()
    touched = await users.session(uid, ip=fresh_ip(), created_at=utcnow() - timedelta(minutes=10))
    viewer = await users.session(uid, ip=fresh_ip())

    result = await touch(base_settings, touched.token)
    assert result.code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["token_suffix"] == touched.record.token_suffix
    assert_about_now(printed["last_seen_at"])
    assert touched.token not in result.stdout

    sessions = by_id(
        (await graphql_data(client, SESSIONS_QUERY, token=viewer.token))["me"]["sessions"]
    )
    assert sessions[touched.record.id]["lastSeenAt"] == printed["last_seen_at"]
    assert await stored_last_seen(resources, touched) == printed["last_seen_at"]


async def test_cli_touch_of_an_unknown_or_ended_token_fails(
    users: Users, resources: Resources, base_settings: Settings
) -> None:
    # Any string, including one that looks like an option, is only an unknown token.
    result = await touch(base_settings, "-" + secrets.token_urlsafe(32))
    assert result.code == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr

    ended = await users.session(users.new_id(), ip=fresh_ip())
    await resources.store.end(ended.token)
    result = await touch(base_settings, ended.token)
    assert result.code == 1
    assert result.stdout == ""
    # Touching never brings an ended session back.
    assert await resources.store.authenticate(ended.token) is None

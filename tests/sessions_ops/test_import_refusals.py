"""`sessions-api sessions import` stops at a row it cannot store, names its line, and keeps the
rows before it: a token another session already has, a token that repeats an earlier line, a value
Postgres cannot keep (a NUL byte, a time outside the UTC calendar)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.tokens import new_token
from tests.app_client import fresh_ip
from tests.cli_runner import Result, import_row, run_cli
from tests.conftest import Users


async def run_import(settings: Settings, rows: list[dict[str, Any]]) -> Result:
    """`sessions import` of these rows, one JSON object a line."""
    return await run_cli(
        settings, "sessions", "import", stdin="".join(json.dumps(r) + "\n" for r in rows)
    )


def assert_stopped_at_line(result: Result, line: int) -> None:
    """Exit status 1 and a message naming the line, without a traceback."""
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert re.search(rf"\bline {line}\b", result.stderr), result.stderr


async def test_import_stops_at_a_row_whose_token_is_already_stored(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    owner = users.new_id()
    taken = new_token()
    await users.session(owner, ip=fresh_ip(), user_agent="the owner", token=taken)

    user_id = users.new_id()
    rows = [import_row(user_id, 0), import_row(user_id, 1, token=taken), import_row(user_id, 2)]
    result = await run_import(base_settings, rows)

    assert_stopped_at_line(result, 2)
    assert "already in use" in result.stderr
    [printed] = [json.loads(line) for line in result.lines]
    assert printed["token"] != taken
    record = await resources.store.authenticate(printed["token"])
    assert record is not None and record.user_agent == "row-0"
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert [r.user_agent for r in active] == ["row-0"]
    # The stored session keeps its owner.
    kept = await resources.store.authenticate(taken)
    assert kept is not None and (kept.user_id, kept.user_agent) == (owner, "the owner")


async def test_import_stops_at_a_token_that_repeats_an_earlier_line(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    token = new_token()
    rows = [
        import_row(user_id, 0),
        import_row(user_id, 1, token=token),
        import_row(user_id, 2),
        import_row(user_id, 3, token=token),
        import_row(user_id, 4),
    ]
    result = await run_import(base_settings, rows)

    assert_stopped_at_line(result, 4)
    assert re.search(r"repeats line 2\b", result.stderr), result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 3
    assert printed[1]["token"] == token
    for i, out in enumerate(printed):
        record = await resources.store.authenticate(out["token"])
        assert record is not None and record.user_agent == f"row-{i}"
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1", "row-2"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        pytest.param("user_agent", "Mozilla\x00/5.0", "NUL", id="nul-in-user-agent"),
        # Year 1 at +14:00 is in year 0 in UTC, outside the calendar.
        pytest.param("created_at", "0001-01-01T00:00:00+14:00", "created_at", id="before-utc"),
    ],
)
async def test_import_stops_cleanly_at_a_value_it_cannot_store(
    base_settings: Settings, resources: Resources, users: Users, field: str, value: str, says: str
) -> None:
    user_id = users.new_id()
    rows = [import_row(user_id, i) for i in range(4)]
    rows[2][field] = value
    result = await run_import(base_settings, rows)

    assert_stopped_at_line(result, 3)
    assert says in result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 2
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1"]

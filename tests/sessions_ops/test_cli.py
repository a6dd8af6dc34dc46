"""The `sessions-api` command, run as a real subprocess against the run's Postgres and Redis.

Effects are checked where a user would see them: the HTTP app (REST and GraphQL) and the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import InvalidSession, NewSession, prepare
from store.tokens import hash_token, new_token
from tests.app_client import ROUTE, cookie, fresh_ip, rest_sessions, ts
from tests.cli_runner import (
    Result,
    assert_usage_error,
    cli_command,
    create,
    import_row,
    iso,
    now,
    run_cli,
    run_create,
    start_import,
)
from tests.conftest import Users, with_database
from tests.http_errors import assert_rest_error

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
GRAPHQL_HEADERS = {"accept": "application/graphql-response+json"}
HISTORY_QUERY = """
query { me { history(first: 200) { edges { node { tokenSuffix endedAt } } } } }
"""


# -- sessions create --------------------------------------------------------------------------


async def test_create_prints_one_json_line_whose_token_signs_in(
    base_settings: Settings, client: httpx.AsyncClient, users: Users
) -> None:
    user_id = users.new_id()
    before = now()
    result = await run_create(base_settings, user_id, "--user-agent", "UA 1", ip="81.2.69.142")
    after = now()
    assert result.code == 0, result
    assert len(result.lines) == 1, result.stdout
    created = json.loads(result.lines[0])
    assert set(created) == {"token", "token_suffix"}
    token = created["token"]
    assert URL_SAFE.fullmatch(token)
    assert len(token) * 6 >= 128  # URL-safe base64 carries 6 bits a character
    assert created["token_suffix"] == token[-6:]

    body = await rest_sessions(client, token)
    [session] = body["sessions"]
    assert session["is_current"] is True
    assert session["token_suffix"] == token[-6:]
    assert session["client_ip"] == "81.2.69.142"
    assert session["user_agent"] == "UA 1"
    created_at, expires_at = ts(session["created_at"]), ts(session["expires_at"])
    assert before <= created_at <= after
    assert expires_at - created_at == timedelta(days=30)


async def test_two_creates_give_different_tokens(base_settings: Settings, users: Users) -> None:
    user_id = users.new_id()
    first = await create(base_settings, user_id)
    second = await create(base_settings, user_id)
    assert first["token"] != second["token"]


async def test_create_ttl_counts_from_now(
    base_settings: Settings, client: httpx.AsyncClient, users: Users
) -> None:
    before = now()
    created = await create(base_settings, users.new_id(), "--ttl", "3600")
    after = now()
    [session] = (await rest_sessions(client, created["token"]))["sessions"]
    expires_at = ts(session["expires_at"])
    assert before + timedelta(seconds=3600) <= expires_at <= after + timedelta(seconds=3600)


async def test_create_honours_created_at_and_expires_at_to_the_second(
    base_settings: Settings, client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    created_at = now() - timedelta(days=2)
    expires_at = now() + timedelta(days=5)
    # Given with a fraction of a second and another time zone: stored in UTC, to the second.
    created_arg = (
        (created_at + timedelta(microseconds=750_000))
        .astimezone(timezone(timedelta(hours=2)))
        .isoformat()
    )
    expires_arg = (expires_at + timedelta(microseconds=250_000)).isoformat()
    assert created_arg.endswith(".750000+02:00") and "." in expires_arg

    created = await create(
        base_settings, users.new_id(), "--created-at", created_arg, "--expires-at", expires_arg
    )
    [session] = (await rest_sessions(client, created["token"]))["sessions"]
    assert session["created_at"] == iso(created_at)
    assert session["expires_at"] == iso(expires_at)

    record = await resources.store.authenticate(created["token"])
    assert record is not None
    assert record.created_at == created_at
    assert record.expires_at == expires_at
    stored = await resources.store.pool.fetchrow(
        "SELECT created_at, expires_at FROM sessions WHERE token_hash = $1", record.token_hash
    )
    assert stored["created_at"] == created_at
    assert stored["expires_at"] == expires_at


async def test_create_with_expires_at_and_ttl_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_create(
        base_settings, user_id, "--expires-at", iso(now() + timedelta(days=1)), "--ttl", "3600"
    )
    assert_usage_error(result, "--ttl")
    assert await resources.store.list_active_for_user(user_id=user_id) == []


@pytest.mark.parametrize("ip", ["not-an-ip", "300.1.2.3", "81.2.69.142/24", ""])
async def test_create_with_an_invalid_ip_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users, ip: str
) -> None:
    user_id = users.new_id()
    result = await run_cli(
        base_settings, "sessions", "create", "--user-id", user_id, "--ip", ip, "--user-agent", "UA"
    )
    assert_usage_error(result, "ip")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert await resources.store.list_active_for_user(user_id=user_id) == []
    history, _ = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert history == []


async def test_create_expiring_before_it_was_created_is_a_usage_error(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    result = await run_create(
        base_settings,
        user_id,
        "--created-at",
        iso(now() - timedelta(hours=1)),
        "--expires-at",
        iso(now() - timedelta(hours=2)),
    )
    assert_usage_error(result, "expires_at")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    history, _ = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert history == []


async def test_create_with_a_bad_timestamp_is_a_usage_error(
    base_settings: Settings, users: Users
) -> None:
    result = await run_create(base_settings, users.new_id(), "--created-at", "yesterday")
    assert_usage_error(result, "--created-at")


# -- sessions end -----------------------------------------------------------------------------


async def test_end_signs_the_session_out_and_moves_it_to_history(
    base_settings: Settings, client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    ending = await create(base_settings, user_id)
    staying = await create(base_settings, user_id)

    result = await run_cli(base_settings, "sessions", "end", "--token", ending["token"])
    assert result.code == 0, result

    gone = await client.get(ROUTE, headers=cookie(ending["token"]))
    assert gone.status_code == 401
    assert gone.json()["error"]["code"]
    assert_rest_error(gone, 401, "unauthenticated")

    body = await rest_sessions(client, staying["token"])
    assert [s["token_suffix"] for s in body["sessions"]] == [staying["token_suffix"]]
    assert [h["token_suffix"] for h in body["history"]] == [ending["token_suffix"]]

    response = await client.post(
        "/graphql",
        json={"query": HISTORY_QUERY},
        headers={**GRAPHQL_HEADERS, **cookie(staying["token"])},
    )
    assert response.status_code == 200, response.text
    [edge] = response.json()["data"]["me"]["history"]["edges"]
    assert edge["node"]["tokenSuffix"] == ending["token_suffix"]
    assert edge["node"]["endedAt"] is not None

    [record], _ = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert record.end_reason == "logout"
    assert record.ended_at is not None


async def test_end_with_reason_revoked_is_kept_and_ending_again_changes_nothing(
    base_settings: Settings, client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    created = await create(base_settings, user_id)

    first = await run_cli(
        base_settings, "sessions", "end", "--token", created["token"], "--reason", "revoked"
    )
    assert first.code == 0, first
    [record], _ = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert record.end_reason == "revoked"

    await asyncio.sleep(1.1)  # so that a second end would record a different second
    again = await run_cli(
        base_settings, "sessions", "end", "--token", created["token"], "--reason", "logout"
    )
    assert again.code == 0, again
    [after], _ = await resources.store.list_history_for_user(user_id=user_id, first=10)
    assert after.end_reason == "revoked"
    assert after.ended_at == record.ended_at
    response = await client.get(ROUTE, headers=cookie(created["token"]))
    assert_rest_error(response, 401, "unauthenticated")


async def test_end_of_an_unknown_token_fails_with_a_message(base_settings: Settings) -> None:
    result = await run_cli(base_settings, "sessions", "end", "--token", new_token())
    assert result.code == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "session" in result.stderr


async def test_a_token_starting_with_a_dash_is_a_value_not_an_option(
    base_settings: Settings,
) -> None:
    # Any string may be handed over as a token; one that looks like an option must still
    # get the ordinary "no session" answer, not a usage error.
    for argv in (["--token", "-" + new_token()], ["--token", "--reason"]):
        result = await run_cli(base_settings, "sessions", "end", *argv)
        assert result.code == 1, result
        assert "no session has this token" in result.stderr


async def test_end_reads_the_token_from_stdin_with_token_dash(
    users: Users, resources: Resources, base_settings: Settings
) -> None:
    created = await users.session(users.new_id(), ip="8.8.8.8")
    result = await run_cli(
        base_settings,
        "sessions",
        "end",
        "--token",
        "-",
        "--reason",
        "revoked",
        stdin=created.token + "\r\n",
    )
    assert result.code == 0, result
    assert json.loads(result.stdout)["end_reason"] == "revoked"
    assert created.token not in result.stdout + result.stderr
    assert await resources.store.authenticate(created.token) is None


@pytest.mark.parametrize(
    ("argv", "stdin", "says"),
    [
        pytest.param([], "", "--token", id="no-token-option"),
        pytest.param(["--token", "-"], "", "no token given", id="empty-stdin"),
        pytest.param(["--token="], "", "no token given", id="empty-value"),
        # Abbreviations are off: `--tok -abc` must not read -abc as an option either.
        pytest.param(["--tok", "abc"], "", "--token", id="abbreviated"),
    ],
)
async def test_end_without_a_token_is_a_usage_error(
    base_settings: Settings, argv: list[str], stdin: str, says: str
) -> None:
    result = await run_cli(base_settings, "sessions", "end", *argv, stdin=stdin)
    assert result.code == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert says in result.stderr


async def test_end_refuses_an_unknown_reason(base_settings: Settings) -> None:
    result = await run_cli(
        base_settings, "sessions", "end", "--token", new_token(), "--reason", "bored"
    )
    assert_usage_error(result, "--reason")


# -- sessions import --------------------------------------------------------------------------


async def test_import_prints_one_token_per_row_in_order_and_routes_past_rows_to_history(
    base_settings: Settings, client: httpx.AsyncClient, resources: Resources, users: Users
) -> None:
    user_ids = [users.new_id() for _ in range(10)]
    t = now()
    rows: list[dict[str, Any]] = []
    kept_tokens: dict[int, str] = {}
    for i in range(3000):
        user_id = user_ids[i % len(user_ids)]
        kind = i % 3
        created_at = iso(t - timedelta(days=60, seconds=i))
        if kind == 0:  # active; every fifth keeps the token it had in the older store
            row = import_row(user_id, i, created_at=created_at)
            if i % 5 == 0:
                kept_tokens[i] = row["token"] = new_token()
        elif kind == 1:  # ended
            row = import_row(
                user_id,
                i,
                created_at=created_at,
                ended_at=iso(t - timedelta(days=59)),
                end_reason="revoked" if i % 2 else "logout",
            )
        else:  # expired, never ended
            row = import_row(
                user_id, i, created_at=created_at, expires_at=iso(t - timedelta(days=30))
            )
        rows.append(row)

    result = await run_cli(
        base_settings, "sessions", "import", stdin="".join(json.dumps(r) + "\n" for r in rows)
    )
    assert result.code == 0, result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 3000
    for out in printed:
        assert set(out) == {"token", "token_suffix"}
        assert out["token_suffix"] == out["token"][-6:]
    assert len({out["token"] for out in printed}) == 3000
    for i, token in kept_tokens.items():
        assert printed[i]["token"] == token

    # Active rows: each printed token signs in to the session of that very row.
    for i in range(0, 3000, 3):
        record = await resources.store.authenticate(printed[i]["token"])
        assert record is not None, f"row {i} does not sign in"
        assert record.user_agent == f"row-{i}"
        assert record.user_id == rows[i]["user_id"]
    for i in (0, 3, 2997):  # kept tokens and new ones alike, through the app
        [current] = [
            s
            for s in (await rest_sessions(client, printed[i]["token"]))["sessions"]
            if s["is_current"]
        ]
        assert current["user_agent"] == f"row-{i}"

    # Past rows: in history with the printed suffix, never active.
    for i in (1, 2, 2998, 2999):
        assert await resources.store.authenticate(printed[i]["token"]) is None
    for user_id in user_ids:
        active = await resources.store.list_active_for_user(user_id=user_id)
        assert len(active) == 100
        history, more = await resources.store.list_history_for_user(user_id=user_id, first=1000)
        assert not more
        assert len(history) == 200
        for record in history:
            i = int(record.user_agent.removeprefix("row-"))
            assert i % 3 != 0
            assert record.token_suffix == printed[i]["token_suffix"]
            if i % 3 == 1:
                assert record.end_reason == rows[i]["end_reason"]
                assert record.ended_at == ts(rows[i]["ended_at"])
            else:
                assert record.end_reason == "expired"


async def test_import_skips_blank_lines(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    first, second = (json.dumps(import_row(user_id, i)) for i in range(2))
    text = f"\n{first}\n   \n\n{second}\n\n"
    result = await run_cli(base_settings, "sessions", "import", stdin=text)
    assert result.code == 0, result
    assert len(result.lines) == 2
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            '{"user_id": "%s", "ip": "999.1.1.1", "created_at": "2026-01-01T00:00:00Z", '
            '"expires_at": "2030-01-01T00:00:00Z"}',
            id="bad-ip",
        ),
        pytest.param(
            '{"user_id": "%s", "ip": "81.2.69.142", "created_at": "2026-01-01T00:00:00Z", '
            '"expires_at": "2030-01-01T00:00:00Z", "colour": "blue"}',
            id="unknown-field",
        ),
        pytest.param('{"user_id": "%s", "ip": ', id="not-json"),
        pytest.param('["%s"]', id="not-an-object"),
        pytest.param(
            '{"user_id": "%s", "ip": "81.2.69.142", "created_at": "2026-01-01T00:00:00Z", '
            '"expires_at": "2030-01-01T00:00:00Z", "end_reason": "logout"}',
            id="reason-without-end",
        ),
        pytest.param(
            '{"user_id": "%s", "ip": "81.2.69.142", "created_at": "2026-01-01T00:00:00Z", '
            '"expires_at": "2026-02-01T00:00:00Z", "ended_at": "2026-03-01T00:00:00Z"}',
            id="ended-after-expiry",
        ),
        pytest.param(
            '{"user_id": "%s", "ip": "81.2.69.142", "created_at": "1969-01-01T00:00:00Z", '
            '"expires_at": "2030-01-01T00:00:00Z"}',
            id="before-1970",
        ),
        pytest.param(
            '{"user_id": "%s", "ip": "81.2.69.142", "created_at": "2026-01-01T00:00:00Z", '
            '"expires_at": "2030-01-01T00:00:00Z", "user_agent": "\\ud800"}',
            id="lone-surrogate",
        ),
        pytest.param(
            b'{"user_id": "%s", "ip": "81.2.69.142", "created_at": "2026-01-01T00:00:00Z", '
            b'"expires_at": "2030-01-01T00:00:00Z", "user_agent": "\xff"}',
            id="not-utf-8",
        ),
    ],
)
async def test_import_stops_at_a_bad_line_after_importing_the_rows_before_it(
    base_settings: Settings, resources: Resources, users: Users, bad: str | bytes
) -> None:
    user_id = users.new_id()
    lines = [json.dumps(import_row(user_id, i)).encode() for i in range(10)]
    lines[4] = bad % user_id.encode() if isinstance(bad, bytes) else (bad % user_id).encode()
    result = await run_cli(base_settings, "sessions", "import", stdin=b"\n".join(lines) + b"\n")

    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert re.search(r"\bline 5\b", result.stderr), result.stderr
    printed = [json.loads(line) for line in result.lines]
    assert len(printed) == 4
    for i, out in enumerate(printed):
        record = await resources.store.authenticate(out["token"])
        assert record is not None
        assert record.user_agent == f"row-{i}"
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == [f"row-{i}" for i in range(4)]
    history, _ = await resources.store.list_history_for_user(user_id=user_id, first=50)
    assert history == []


async def test_import_names_the_physical_line_when_blank_lines_come_before(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    lines = [
        json.dumps(import_row(user_id, 0)),
        "",
        json.dumps(import_row(user_id, 1)),
        "",
        "not json",
        json.dumps(import_row(user_id, 2)),
    ]
    result = await run_cli(base_settings, "sessions", "import", stdin="\n".join(lines) + "\n")
    assert result.code == 1, result
    assert re.search(r"\bline 5\b", result.stderr), result.stderr
    assert len(result.lines) == 2
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert sorted(r.user_agent for r in active) == ["row-0", "row-1"]


async def assert_printed_rows_are_exactly_the_stored_ones(
    resources: Resources, user_id: str, printed: list[str]
) -> None:
    tokens = [json.loads(line)["token"] for line in printed]
    active = await resources.store.list_active_for_user(user_id=user_id)
    stored = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    assert len(active) == stored == len(tokens)
    assert {r.token_hash for r in active} == {hash_token(t) for t in tokens}


async def test_ctrl_c_while_an_import_waits_for_input_stops_it_at_once(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """Two full batches are written and printed; the 500 rows read since then are dropped, and
    stdin, still open, does not hold the process up."""
    user_id = users.new_id()
    proc = await start_import(base_settings)
    assert proc.stdin and proc.stdout
    proc.stdin.write(
        b"".join(json.dumps(import_row(user_id, i)).encode() + b"\n" for i in range(2500))
    )
    await proc.stdin.drain()
    printed = [await asyncio.wait_for(proc.stdout.readline(), 60) for _ in range(2000)]
    proc.send_signal(signal.SIGINT)
    # A bound that proves "no hang", not a speed check; stdin stays open all along.
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err
    assert out == b""
    assert b"Traceback" not in err and b"interrupted at line 2001" in err
    await assert_printed_rows_are_exactly_the_stored_ones(
        resources, user_id, [line.decode() for line in printed]
    )


async def test_ctrl_c_in_the_middle_of_an_import_leaves_exactly_the_printed_rows(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    """Interrupted wherever it happens to be (reading, or writing a batch, which then
    finishes), the rows stored are the rows whose tokens were printed."""
    user_id = users.new_id()
    proc = await start_import(base_settings)
    assert proc.stdin and proc.stdout
    proc.stdin.write(
        b"".join(json.dumps(import_row(user_id, i)).encode() + b"\n" for i in range(20000))
    )
    first = await asyncio.wait_for(proc.stdout.readline(), 60)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    printed = [first.decode(), *out.decode().splitlines()]
    assert len(printed) % 1000 == 0 and len(printed) < 20000  # whole batches only
    await assert_printed_rows_are_exactly_the_stored_ones(resources, user_id, printed)


async def test_import_with_stdin_closed_is_a_usage_error(base_settings: Settings) -> None:
    env = dict(os.environ, DATABASE_URL=base_settings.database_url)
    proc = await asyncio.create_subprocess_exec(
        *cli_command(),
        "sessions",
        "import",
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=lambda: os.close(0),
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert b"Traceback" not in err and b"standard input" in err


async def test_a_zone_on_an_ipv6_address_is_dropped_in_both_stores(
    base_settings: Settings, resources: Resources, users: Users
) -> None:
    user_id = users.new_id()
    created = await create(base_settings, user_id, ip="2001:db8::1%eth0")
    [record] = await resources.store.list_active_for_user(user_id=user_id)
    assert record.client_ip == "2001:db8::1"
    stored = await resources.store.pool.fetchval(
        "SELECT host(client_ip) FROM sessions WHERE user_id = $1", user_id
    )
    assert stored == "2001:db8::1"
    assert created["token_suffix"] == record.token_suffix


async def test_bytes_that_are_not_utf_8_in_arguments_are_a_usage_error(
    base_settings: Settings, users: Users
) -> None:
    user_id = users.new_id()
    proc = await asyncio.create_subprocess_exec(
        *cli_command(),
        "sessions",
        "create",
        "--user-id",
        user_id,
        "--ip",
        fresh_ip(),
        "--user-agent",
        b"agent-\xff",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, DATABASE_URL=base_settings.database_url),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert_usage_error(Result(proc.returncode or 0, out.decode(), err.decode()), "UTF-8")


async def test_import_into_a_closed_output_stops_cleanly_and_keeps_both_stores_alike(
    base_settings: Settings, resources: Resources, users: Users, tmp_path: Path
) -> None:
    user_id = users.new_id()
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(import_row(user_id, i)) + "\n" for i in range(5000)))
    env = dict(
        os.environ,
        DATABASE_URL=base_settings.database_url,
        REDIS_KEY_PREFIX=base_settings.redis_key_prefix,
    )
    shell = f"{' '.join(cli_command())} sessions import < {rows} 2> {tmp_path / 'err'} | head -1"
    proc = await asyncio.create_subprocess_shell(
        f"set -o pipefail; {shell}",
        executable="/bin/bash",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "standard output was closed" in err
    assert len(out.splitlines()) == 1
    stored = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = $1", user_id
    )
    active = await resources.store.list_active_for_user(user_id=user_id)
    assert 1 <= len(active) == stored < 5000


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("DATABASE_URL", "postgresql://127.0.0.1:notaport/x"),
        ("DATABASE_URL", "mysql://127.0.0.1/x"),
        ("DATABASE_REPLICA_URL", "mysql://127.0.0.1/x"),
        ("DATABASE_REPLICA_MAX_LAG", "0"),
        ("REDIS_URL", "notredis://x"),
        ("PORT", "abc"),
        ("LOG_LEVEL", "verbose"),
        ("GEO_CACHE_TTL", "0"),
    ],
)
async def test_bad_configuration_is_named_in_one_line(
    base_settings: Settings, setting: str, value: str
) -> None:
    result = await run_cli(base_settings, "check", **{setting: value})
    assert_usage_error(result, "bad configuration", setting)


@pytest.mark.parametrize("args", [["--port", "99999"], ["--port", "-1"], ["--workers", "0"]])
async def test_serve_refuses_out_of_range_numbers(base_settings: Settings, args: list[str]) -> None:
    assert_usage_error(await run_cli(base_settings, "serve", *args), args[0])


async def test_serve_on_a_port_in_use_exits_1(base_settings: Settings, database: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = await run_cli(base_settings, "serve", "--port", port, LOG_LEVEL="warning")
    assert result.code == 1, result
    assert "address already in use" in result.stderr.lower()


@pytest.mark.parametrize("target", ["missing-dir/schema.graphql", "."])
async def test_export_schema_to_a_path_it_cannot_write_exits_1(
    base_settings: Settings, tmp_path: Path, target: str
) -> None:
    target = str(tmp_path / target)
    result = await run_cli(base_settings, "export-schema", "-o", target)
    assert result.code == 1, result
    assert "Traceback" not in result.stderr and f"cannot write {target}" in result.stderr


async def test_ended_at_a_little_ahead_of_this_clock_is_accepted_far_ahead_refused(
    users: Users,
) -> None:
    """Rows come from other machines, whose clocks may run a little ahead."""
    started = utcnow() - timedelta(hours=1)

    def row(ended_in: timedelta) -> NewSession:
        return NewSession(
            user_id=users.new_id(),
            ip=fresh_ip(),
            created_at=started,
            expires_at=utcnow() + timedelta(days=1),
            ended_at=utcnow() + ended_in,
        )

    assert prepare(row(timedelta(minutes=1)), started).record.ended_at is not None
    with pytest.raises(InvalidSession, match="future"):
        prepare(row(timedelta(minutes=30)), started)


async def test_unreadable_standard_input_stops_the_import_with_exit_1(
    base_settings: Settings,
) -> None:
    """A read that fails (here: non-blocking stdin with nothing in it yet) is not the end of the
    input: the import says so instead of finishing as if it had read everything."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        proc = await asyncio.create_subprocess_exec(
            *cli_command(),
            "sessions",
            "import",
            stdin=read_end,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, DATABASE_URL=base_settings.database_url),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert proc.returncode == 1, err
    assert b"could not be read" in err and b"Traceback" not in err
    assert out == b""


def test_multi_host_and_socket_database_urls_are_valid_settings() -> None:
    for url in (
        "postgresql://h1:5432,h2:5433/sessions",
        "postgresql:///sessions?host=/var/run/postgresql",
        "postgres://user:p%40ss@[::1]:5432/sessions",
    ):
        assert Settings(database_url=url).database_url == url
        assert Settings(database_replica_url=url).database_replica_url == url


def test_no_replica_unless_one_is_named() -> None:
    assert Settings().database_replica_url is None
    assert Settings(database_replica_url=" ").database_replica_url is None
    assert Settings().database_replica_max_lag == 10


# -- demo, check, help ------------------------------------------------------------------------


async def run_demo(settings: Settings) -> str:
    result = await run_cli(settings, "demo")
    assert result.code == 0, result
    match = re.search(r"psession=([A-Za-z0-9_-]+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


async def test_demo_seeds_a_user_and_prints_a_cookie_that_signs_in(
    base_settings: Settings, client: httpx.AsyncClient
) -> None:
    token = await run_demo(base_settings)
    body = await rest_sessions(client, token)
    assert len(body["sessions"]) == 3
    assert [s["is_current"] for s in body["sessions"]].count(True) == 1
    assert len(body["history"]) == 6

    again = await run_demo(base_settings)
    body = await rest_sessions(client, again)
    assert len(body["sessions"]) == 3
    assert len(body["history"]) == 6
    assert_rest_error(await client.get(ROUTE, headers=cookie(token)), 401, "unauthenticated")


async def test_demos_run_at_once_leave_one_demo_user(
    base_settings: Settings, resources: Resources
) -> None:
    results = await asyncio.gather(*(run_cli(base_settings, "demo") for _ in range(5)))
    assert all(r.code == 0 for r in results), results
    stored = await resources.store.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE user_id = 'demo-user'"
    )
    active = await resources.store.list_active_for_user(user_id="demo-user")
    assert (stored, len(active)) == (9, 3)


async def test_check_passes_when_postgres_and_redis_answer(
    base_settings: Settings, database: str
) -> None:
    result = await run_cli(base_settings, "check")
    assert result.code == 0, result


async def test_check_fails_naming_redis_when_redis_does_not_answer(
    base_settings: Settings, database: str
) -> None:
    result = await run_cli(base_settings, "check", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert "redis" in result.stderr.lower()
    assert "postgres" not in result.stderr.lower()


async def test_serve_refuses_an_unmigrated_database_with_one_line_saying_what_to_run(
    base_settings: Settings,
) -> None:
    name = f"sessions_unmigrated_{secrets.token_hex(5)}"
    url = with_database(base_settings.database_url, name)

    absent = await run_cli(base_settings, "serve", "--port", "0", DATABASE_URL=url)
    assert absent.code == 1, absent
    assert "Traceback" not in absent.stderr
    assert "does not exist" in absent.stderr and "sessions-api migrate" in absent.stderr

    admin = await asyncpg.connect(base_settings.database_url, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        empty = await run_cli(base_settings, "serve", "--port", "0", DATABASE_URL=url)
        assert empty.code == 1, empty
        assert "Traceback" not in empty.stderr
        assert "0001_sessions.sql" in empty.stderr and "sessions-api migrate" in empty.stderr
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["migrate"],
        ["check"],
        ["demo"],
        ["export-schema"],
        ["sessions"],
        ["sessions", "create"],
        ["sessions", "end"],
        ["sessions", "import"],
    ],
    ids=lambda a: " ".join(a) or "top",
)
async def test_help_works_for_every_command(base_settings: Settings, args: list[str]) -> None:
    result = await run_cli(base_settings, *args, "--help")
    assert result.code == 0, result
    assert result.stdout.startswith("usage: sessions-api")
    assert result.stderr == ""
    if not args:
        for command in ("serve", "migrate", "check", "demo", "export-schema", "sessions"):
            assert command in result.stdout
    if args == ["sessions", "create"]:
        options = ("--user-id", "--ip", "--user-agent", "--created-at", "--expires-at", "--ttl")
        for option in options:
            assert option in result.stdout

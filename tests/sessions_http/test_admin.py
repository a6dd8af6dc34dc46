"""The admin API (/admin/v1) and its CLI: admin keys and scopes, signing a user out
everywhere, looking sessions up, the audit trail, and its own listener (ADMIN_LISTEN)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store import admin
from store.models import utcnow
from tests.app_client import ROUTE, cookie, signs_in
from tests.cli_runner import run_cli
from tests.conftest import Users
from tests.infra import free_port
from tests.servers import serve_process

ADMIN = "/admin/v1"


@dataclass(frozen=True)
class Keys:
    read: str
    read_name: str
    write: str  # read and write
    write_name: str


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keys(resources: Resources) -> Keys:
    pool = resources.store.pool
    read_name = f"support-desk-{uuid.uuid4().hex[:8]}"
    _, read = await admin.create_key(pool, name=read_name, scopes=["sessions:read"])
    name = f"login-service-{uuid.uuid4().hex[:8]}"
    _, write = await admin.create_key(pool, name=name, scopes=["sessions:read", "sessions:write"])
    return Keys(read, read_name, write, name)


@pytest.fixture(scope="module")
def second_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("admin") / "serve.log"
    with serve_process(settings, log) as url:
        yield url


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def test_keys_and_scopes_decide_401_and_403(
    client: httpx.AsyncClient, resources: Resources, users: Users, keys: Keys
) -> None:
    user = users.new_id()
    me = await users.session(user)
    path = f"{ADMIN}/users/{user}/sessions"
    missing = await client.get(path)
    assert_error(missing, 401, "unauthenticated")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(await client.get(path, headers=bearer("sak_not-a-key")), 401, "unauthenticated")
    # A user's cookie is never an admin's credential.
    assert_error(await client.get(path, headers=cookie(me.token)), 401, "unauthenticated")
    # Read may look, not touch.
    assert (await client.get(path, headers=bearer(keys.read))).status_code == 200
    refused = await client.delete(path, headers=bearer(keys.read))
    assert_error(refused, 403, "forbidden")
    assert await signs_in(client, me.token)
    # A revoked key stops working at once.
    (found,) = [k for k in await admin.list_keys(resources.store.pool) if k.name == keys.write_name]
    await admin.revoke_key(resources.store.pool, found.id)
    assert_error(await client.get(path, headers=bearer(keys.write)), 401, "unauthenticated")


async def test_signing_a_user_out_everywhere_is_immediate_on_every_process(
    client: httpx.AsyncClient, users: Users, keys: Keys, second_server: str
) -> None:
    user, bystander = users.new_id(), users.new_id()
    kept = await users.session(user)
    gone = [await users.session(user, ip="8.8.8.8") for _ in range(2)]
    theirs = await users.session(bystander)
    answer = await client.delete(
        f"{ADMIN}/users/{user}/sessions",
        params={"except": kept.record.id},
        headers=bearer(keys.write),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"count": 2}
    async with httpx.AsyncClient(base_url=second_server, timeout=20) as other:
        for issued in gone:
            assert not await signs_in(other, issued.token)
            assert not await signs_in(client, issued.token)
        assert await signs_in(other, kept.token)
        assert await signs_in(other, theirs.token)
    # Without `except`, the last one goes too.
    answer = await client.delete(f"{ADMIN}/users/{user}/sessions", headers=bearer(keys.write))
    assert answer.json() == {"count": 1}
    assert not await signs_in(client, kept.token)


async def test_end_all_from_the_cli_too(
    settings: Settings, client: httpx.AsyncClient, users: Users, second_server: str
) -> None:
    user = users.new_id()
    sessions = [await users.session(user, ip="8.8.8.8") for _ in range(3)]
    listed = await run_cli(settings, "sessions", "list", "--user-id", user)
    assert listed.code == 0, listed
    lines = [json.loads(line) for line in listed.lines]
    assert sorted(line["id"] for line in lines) == sorted(s.record.id for s in sessions)
    for issued in sessions:
        assert issued.token not in listed.stdout and issued.record.token_hash not in listed.stdout
    ended = await run_cli(
        settings,
        "sessions",
        "end-all",
        "--user-id",
        user,
        "--except-session",
        sessions[0].record.id,
    )
    assert ended.code == 0, ended
    assert json.loads(ended.lines[-1]) == {"count": 2}
    async with httpx.AsyncClient(base_url=second_server, timeout=20) as other:
        assert await signs_in(other, sessions[0].token)
        assert not await signs_in(other, sessions[1].token)
        assert not await signs_in(other, sessions[2].token)


async def test_looking_up_and_revoking_one_session(
    client: httpx.AsyncClient, users: Users, keys: Keys
) -> None:
    user = users.new_id()
    active = await users.session(user, ip="81.2.69.142")
    past = [await users.session(user, ip="8.8.8.8") for _ in range(3)]
    for issued in past:
        await users.resources.store.end(issued.token)
    assert await signs_in(client, active.token)  # sets its lastSeenAt
    looked = await client.get(
        f"{ADMIN}/users/{user}/sessions",
        params={"history_limit": 2},
        headers=bearer(keys.read),
    )
    assert looked.status_code == 200, looked.text
    assert looked.headers["cache-control"] == "no-store"
    body = looked.json()
    (shown,) = body["sessions"]
    assert shown["id"] == active.record.id and shown["active"] is True
    assert shown["last_seen_at"] is not None and shown["end_reason"] is None
    assert shown["geo"]["country_code"] == "GB"
    assert active.token not in looked.text
    assert len(body["history"]) == 2 and body["history_next_cursor"]
    assert {h["end_reason"] for h in body["history"]} == {"logout"}
    rest = await client.get(
        f"{ADMIN}/users/{user}/sessions",
        params={"history_limit": 2, "after": body["history_next_cursor"]},
        headers=bearer(keys.read),
    )
    assert len(rest.json()["history"]) == 1 and rest.json()["history_next_cursor"] is None
    seen = {h["id"] for h in body["history"] + rest.json()["history"]}
    assert seen == {p.record.id for p in past}

    one = await client.get(f"{ADMIN}/sessions/{past[0].record.id}", headers=bearer(keys.read))
    assert one.status_code == 200 and one.json()["end_reason"] == "logout"
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(
        await client.get(f"{ADMIN}/sessions/{unknown}", headers=bearer(keys.read)), 404, "not_found"
    )
    assert_error(
        await client.get(f"{ADMIN}/sessions/nonsense", headers=bearer(keys.read)), 404, "not_found"
    )

    revoked = await client.delete(
        f"{ADMIN}/sessions/{active.record.id}", headers=bearer(keys.write)
    )
    assert revoked.status_code == 204
    # Again: nothing changes, and the call is in the audit trail all the same.
    again = await client.delete(f"{ADMIN}/sessions/{active.record.id}", headers=bearer(keys.write))
    assert again.status_code == 204
    pool = users.resources.store.pool
    trail = await admin.audit_page(pool, user_id=user, first=50, before_seq=None)
    revokes = [e for e in trail if e.action == "session.revoked"]
    assert [e.details for e in revokes] == [{"already_ended": True}, None]
    assert not await signs_in(client, active.token)
    again = await client.get(f"{ADMIN}/sessions/{active.record.id}", headers=bearer(keys.read))
    assert again.json()["end_reason"] == "revoked" and again.json()["active"] is False
    missing = await client.delete(f"{ADMIN}/sessions/{unknown}", headers=bearer(keys.write))
    assert_error(missing, 404, "not_found")


async def test_a_user_id_no_user_can_have_is_a_bad_request(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    # NUL is in no user id (the store refuses it), and Postgres text cannot hold one: it never
    # reaches a query. Nor does an id longer than any user's.
    long = "u" * 129
    for method, path, params in [
        ("GET", f"{ADMIN}/users/a%00b/sessions", {}),
        ("DELETE", f"{ADMIN}/users/a%00b/sessions", {}),
        ("GET", f"{ADMIN}/audit", {"user_id": "a\x00b"}),
        ("GET", f"{ADMIN}/users/{long}/sessions", {}),
        ("GET", f"{ADMIN}/audit", {"user_id": long}),
    ]:
        answer = await client.request(method, path, params=params, headers=bearer(keys.write))
        assert_error(answer, 400, "bad_request")
    # An empty user_id is no filter, as before.
    everyone = await client.get(f"{ADMIN}/audit", params={"user_id": ""}, headers=bearer(keys.read))
    assert everyone.status_code == 200, everyone.text


async def test_the_audit_trail_names_who_did_what(
    settings: Settings,
    client: httpx.AsyncClient,
    resources: Resources,
    users: Users,
    keys: Keys,
) -> None:
    user = users.new_id()
    me = await users.session(user)
    phone = await users.session(user, ip="8.8.8.8")
    tablet = await users.session(user, ip="1.1.1.1")
    laptop = await users.session(user, ip="9.9.9.9")
    # The user revokes one through REST...
    headers = {**cookie(me.token), "X-Request-Id": "req-from-the-page"}
    assert (await client.delete(f"{ROUTE}/{phone.record.id}", headers=headers)).status_code == 204
    # ... an admin another...
    assert (
        await client.delete(f"{ADMIN}/sessions/{tablet.record.id}", headers=bearer(keys.write))
    ).status_code == 204
    # ... and the login service, through the CLI, the rest.
    ended = await run_cli(settings, "sessions", "end-all", "--user-id", user)
    assert json.loads(ended.lines[-1]) == {"count": 2}

    page = await client.get(f"{ADMIN}/audit", params={"user_id": user}, headers=bearer(keys.read))
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    by_session: dict[str | None, list[dict[str, Any]]] = {}
    for entry in entries:
        by_session.setdefault(entry["session_id"], []).append(entry)
    (by_user,) = by_session[phone.record.id]
    assert by_user["actor"]["type"] == "user" and by_user["action"] == "session.revoked"
    assert by_user["request_id"] == "req-from-the-page" and by_user["client_addr"] == "127.0.0.1"
    (by_admin,) = by_session[tablet.record.id]
    assert by_admin["actor"] == {
        "type": "admin",
        "name": keys.write_name,
        "key_id": by_admin["actor"]["key_id"],
    }
    for issued in (me, laptop):
        (by_cli,) = by_session[issued.record.id]
        assert by_cli["actor"]["type"] == "cli" and by_cli["action"] == "session.revoked"
    summary = [e for e in entries if e["action"] == "user.sessions.end_all"]
    assert summary and summary[0]["details"]["count"] == 2
    # The CLI reads the same trail, newest first.
    printed = await run_cli(settings, "audit", "--user-id", user)
    printed_entries = [json.loads(line) for line in printed.lines]
    # The admin's reading of the trail is in it now, as the newest entry.
    assert printed_entries[0]["action"] == "audit.viewed"
    assert printed_entries[0]["actor"]["name"] == keys.read_name
    assert [e["seq"] for e in printed_entries[1:]] == [e["seq"] for e in entries]
    # The event of the admin's revocation names the admin.
    async with resources.store.pool.acquire() as conn:
        data = await conn.fetchval(
            "SELECT data FROM session_events WHERE session_id = $1 AND type = 'session.revoked'",
            tablet.record.id,
        )
    assert json.loads(data)["actor"] == {"type": "admin", "name": keys.write_name}


async def test_no_cors_for_admin_routes(client: httpx.AsyncClient, settings: Settings) -> None:
    origin = "https://portal.example"
    preflight = await client.options(
        f"{ADMIN}/audit",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture(scope="module")
def split_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = {"ADMIN_LISTEN": f"127.0.0.1:{port}", "ADMIN_AUTH_FAILURES_PER_MINUTE": "3"}
    log = tmp_path_factory.mktemp("admin-split") / "serve.log"
    with serve_process(settings, log, env=env) as url:
        yield url, f"http://127.0.0.1:{port}"


async def test_admin_listen_keeps_the_admin_api_off_the_public_port(
    users: Users, keys: Keys, split_server: tuple[str, str]
) -> None:
    public, private = split_server
    user = users.new_id()
    me = await users.session(user)
    path = f"{ADMIN}/users/{user}/sessions"
    async with httpx.AsyncClient(timeout=20) as http:
        assert_error(await http.get(public + path, headers=bearer(keys.read)), 404, "not_found")
        assert (await http.get(private + path, headers=bearer(keys.read))).status_code == 200
        assert (await http.get(public + ROUTE, headers=cookie(me.token))).status_code == 200
        assert (await http.get(private + ROUTE, headers=cookie(me.token))).status_code == 404


async def test_admin_listen_on_the_main_port_is_refused(settings: Settings) -> None:
    port = free_port()
    refused = await run_cli(
        settings, "serve", "--port", str(port), ADMIN_LISTEN=f"127.0.0.1:{port}"
    )
    assert refused.code != 0
    assert "needs a port of its own" in refused.stderr


async def test_failed_attempts_are_counted_and_limited_per_address(
    keys: Keys, split_server: tuple[str, str]
) -> None:
    _, private = split_server
    async with httpx.AsyncClient(base_url=private, timeout=20) as http:
        for _ in range(3):
            assert (
                await http.get(f"{ADMIN}/audit", headers=bearer("sak_guess"))
            ).status_code == 401
        limited = await http.get(f"{ADMIN}/audit", headers=bearer(keys.read))
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
    async with httpx.AsyncClient(timeout=20) as http:
        metrics = (await http.get(split_server[0] + "/metrics")).text
    assert 'sessions_api_admin_auth_failures_total{reason="unknown"} 3.0' in metrics
    assert 'sessions_api_admin_auth_failures_total{reason="limited"} 1.0' in metrics


async def test_admin_keys_from_the_cli(settings: Settings, client: httpx.AsyncClient) -> None:
    made = await run_cli(
        settings, "admin-keys", "create", "--name", "cli-made", "--scope", "sessions:read"
    )
    assert made.code == 0, made
    created = json.loads(made.lines[-1])
    assert created["key"].startswith("sak_") and created["scopes"] == ["sessions:read"]
    listed = await run_cli(settings, "admin-keys", "list")
    assert created["key"] not in listed.stdout
    (mine,) = [json.loads(line) for line in listed.lines if json.loads(line)["id"] == created["id"]]
    assert mine["name"] == "cli-made" and mine["revoked_at"] is None
    ok = await client.get(f"{ADMIN}/audit", headers=bearer(created["key"]))
    assert ok.status_code == 200
    revoked = await run_cli(settings, "admin-keys", "revoke", created["id"])
    assert revoked.code == 0 and json.loads(revoked.lines[-1])["revoked_at"] is not None
    assert_error(
        await client.get(f"{ADMIN}/audit", headers=bearer(created["key"])), 401, "unauthenticated"
    )
    bad = await run_cli(settings, "admin-keys", "create", "--name", "x", "--scope", "everything")
    assert bad.code == 2
    printed = await run_cli(settings, "audit", "--limit", "200")
    mine = [
        json.loads(line)
        for line in printed.lines
        if (json.loads(line)["details"] or {}).get("id") == created["id"]
    ]
    assert [e["action"] for e in mine] == ["admin_key.revoked", "admin_key.created"]
    assert all(e["actor"]["type"] == "cli" for e in mine)
    assert created["key"] not in printed.stdout


async def audit_rows_aged(resources: Resources, user: str, *days: int) -> None:
    """Audit rows about `user`, as if written that many days ago."""
    await resources.store.pool.execute(
        """INSERT INTO audit_log (at, actor_type, action, target_user_id)
           SELECT now() - make_interval(days => d), 'cli', 'session.revoked', $1
             FROM unnest($2::int[]) AS d""",
        user,
        list(days),
    )


async def test_prune_keeps_the_audit_trail_to_its_retention(
    settings: Settings, resources: Resources
) -> None:
    user = Users.new_id()
    await audit_rows_aged(resources, user, 500, 10)
    pruned = await run_cli(settings, "prune", AUDIT_RETENTION="400d")
    assert pruned.code == 0, pruned
    assert json.loads(pruned.lines[-1])["audit_deleted"] >= 1
    left = await admin.audit_page(resources.store.pool, user_id=user, first=10, before_seq=None)
    (kept,) = left
    assert (utcnow() - kept.at).days < 400


async def test_prune_s_bounds_hold_for_the_audit_trail_too(
    settings: Settings, resources: Resources
) -> None:
    user = Users.new_id()
    await audit_rows_aged(resources, user, 500, 500, 500)
    # No history old enough: the two batches allowed are the audit trail's.
    args = ("prune", "--older-than", "36500d", "--batch", "1")
    bounded = await run_cli(settings, *args, "--max-batches", "2", AUDIT_RETENTION="400d")
    assert bounded.code == 0, bounded
    done = json.loads(bounded.lines[-1])
    assert (done["deleted"], done["audit_deleted"], done["complete"]) == (0, 2, False)

    rest = await run_cli(settings, *args, AUDIT_RETENTION="400d")
    assert rest.code == 0, rest
    assert json.loads(rest.lines[-1])["complete"] is True
    assert (
        await admin.audit_page(resources.store.pool, user_id=user, first=10, before_seq=None) == []
    )

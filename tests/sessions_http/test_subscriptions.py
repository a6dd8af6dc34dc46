"""Live updates: `subscription { sessionEvents }` over WebSocket (graphql-transport-ws) at
/graphql, served by `sessions-api serve` processes, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.notifications import APPLICATION
from tests.app_client import ROUTE, cookie
from tests.cli_runner import import_row, run_cli
from tests.conftest import Users
from tests.live_client import PROTOCOL, live, wait_subscribed, ws_url
from tests.servers import serve_process

# The promise: an event reaches a subscriber within a second of its commit.
PROMPT = 1.0
PORTAL = "https://portal.example"


@pytest.fixture(scope="module")
def two_servers(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Two `serve` processes on the same Postgres and Redis: as two hosts would be."""
    logs = tmp_path_factory.mktemp("live")
    env = {"ALLOWED_ORIGINS": PORTAL}
    with (
        serve_process(settings, logs / "a.log", env=env) as a,
        serve_process(settings, logs / "b.log", env=env) as b,
    ):
        yield [a, b]


@pytest.fixture(autouse=True)
async def no_subscriptions_left(request: pytest.FixtureRequest) -> None:
    """Each test starts with no subscription left on its servers (the server lets go of a
    closed connection's a moment after the client has): `wait_subscribed` counts them all."""
    for name in ("two_servers", "strict_server"):
        if name in request.fixturenames:
            servers = request.getfixturevalue(name)
            for url in [servers] if isinstance(servers, str) else servers:
                await wait_subscribed(url, 0)


async def revoke_through(server: str, session_id: str, *, as_: str) -> None:
    """Revokes the session with the REST route of this server, signed in with the token."""
    async with httpx.AsyncClient(base_url=server) as http:
        answer = await http.delete(f"{ROUTE}/{session_id}", headers=cookie(as_))
    assert answer.status_code == 204, answer.text


async def test_a_sessions_create_arrives_within_a_second(
    settings: Settings, users: Users, two_servers: list[str]
) -> None:
    a, _ = two_servers
    user = users.new_id()
    me = await users.session(user)
    async with live(a, me.token) as client:
        await client.subscribe()
        await wait_subscribed(a, 1)
        created = await run_cli(
            settings, "sessions", "create", "--user-id", user, "--ip", "8.8.8.8"
        )
        done = time.monotonic()
        assert created.code == 0, created
        suffix = json.loads(created.lines[-1])["token_suffix"]
        event = await client.next_event(within=PROMPT)
        arrived = time.monotonic() - done
    assert event["type"] == "CREATED", event
    assert event["endedSession"] is None
    session = event["session"]
    assert session["tokenSuffix"] == suffix and session["clientIp"] == "8.8.8.8"
    assert session["isCurrent"] is False and session["geo"]["countryCode"] == "US"
    assert session["isNewLocation"] is True
    assert event["occurredAt"].endswith("Z")
    assert arrived < PROMPT


async def test_a_revoke_on_another_process_arrives_as_revoked(
    users: Users, two_servers: list[str]
) -> None:
    a, b = two_servers
    user = users.new_id()
    me = await users.session(user)
    phone = await users.session(user, ip="8.8.8.8")
    async with live(a, me.token) as client:
        await client.subscribe()
        await wait_subscribed(a, 1)
        await revoke_through(b, phone.record.id, as_=me.token)
        event = await client.next_event(within=PROMPT)
    assert event["type"] == "REVOKED" and event["session"] is None
    assert event["endedSession"]["id"] == phone.record.id
    assert event["endedSession"]["endReason"] == "REVOKED"


async def test_other_users_events_never_arrive(
    settings: Settings, users: Users, two_servers: list[str]
) -> None:
    a, _ = two_servers
    user, stranger = users.new_id(), users.new_id()
    me = await users.session(user)
    async with live(a, me.token) as client:
        await client.subscribe()
        await wait_subscribed(a, 1)
        # The stranger's events come first: had any been sent, it would be read first.
        theirs = await users.session(stranger)
        await users.resources.store.end(theirs.token)
        rows = "".join(json.dumps(import_row(stranger, i)) + "\n" for i in range(3))
        imported = await run_cli(settings, "sessions", "import", stdin=rows)
        assert imported.code == 0, imported
        mine = await users.session(user, ip="8.8.8.8")
        event = await client.next_event(within=10)
    assert event["type"] == "CREATED"
    assert event["session"]["id"] == mine.record.id


async def test_its_own_session_ending_closes_the_connection(
    users: Users, two_servers: list[str]
) -> None:
    a, b = two_servers
    user = users.new_id()
    me = await users.session(user)
    laptop = await users.session(user, ip="8.8.8.8")
    async with live(a, me.token) as revoked, live(a, laptop.token) as other:
        await revoked.subscribe()
        await other.subscribe()
        await wait_subscribed(a, 2)
        # Revoked from the laptop, through the other process.
        await revoke_through(b, me.record.id, as_=laptop.token)
        assert await revoked.closed(within=PROMPT) == (4401, "Session ended")
        # The laptop's connection hears of it, and stays.
        event = await other.next_event(within=PROMPT)
        assert event["type"] == "REVOKED" and event["endedSession"]["id"] == me.record.id
        # Signing out closes it too.
        await users.resources.store.end(laptop.token)
        assert await other.closed(within=PROMPT) == (4401, "Session ended")


async def test_a_session_that_expires_closes_its_connection(
    users: Users, two_servers: list[str]
) -> None:
    a, _ = two_servers
    from datetime import timedelta

    from store.models import utcnow

    user = users.new_id()
    brief = await users.session(user, expires_at=utcnow() + timedelta(seconds=3))
    async with live(a, brief.token) as client:
        await client.subscribe()
        assert await client.closed(within=10) == (4401, "Session ended")


async def _refused(url: str, headers: dict[str, str], subprotocols: list[str]) -> InvalidStatus:
    from websockets.asyncio.client import connect

    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, subprotocols=subprotocols):  # type: ignore[arg-type]
            pass
    return refused.value


async def test_the_handshake_is_refused_without_a_cookie_or_from_a_foreign_origin(
    users: Users, two_servers: list[str]
) -> None:
    a, _ = two_servers
    url = ws_url(a)
    me = await users.session(users.new_id())
    cookie = {"Cookie": f"psession={me.token}"}
    cases = [
        ({}, 401, "unauthenticated"),
        ({"Cookie": "psession=not-a-token"}, 401, "unauthenticated"),
        ({**cookie, "Origin": "https://evil.example"}, 403, "forbidden_origin"),
        ({"Origin": "https://evil.example"}, 403, "forbidden_origin"),
    ]
    for headers, status, code in cases:
        refusal = await _refused(url, headers, [PROTOCOL])
        assert refusal.response.status_code == status, headers
        body = json.loads(refusal.response.body or b"{}")
        assert body["errors"][0]["extensions"]["code"] == code.upper(), body
    # Without the subprotocol.
    refusal = await _refused(url, cookie, [])
    assert refusal.response.status_code == 400
    # The portal's pages, and this service's own (GraphiQL), are welcome.
    for origin in (PORTAL, a):
        async with live(a, me.token, origin=origin) as client:
            await client.subscribe()


async def test_only_subscriptions_run_over_the_websocket(
    users: Users, two_servers: list[str]
) -> None:
    a, _ = two_servers
    me = await users.session(users.new_id())
    async with live(a, me.token) as client:
        for document in ("{ me { id } }", 'mutation { revokeSession(id: "x") }'):
            op = await client.subscribe(document)
            message = await client.message(within=5)
            assert message["id"] == op and message["type"] == "error", message
            assert "not allowed" in message["payload"][0]["message"], message
        # The connection is still good for a subscription.
        await client.subscribe()
        await wait_subscribed(a, 1)


@pytest.fixture(scope="module")
def strict_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `serve` process with small limits: two subscriptions per user, five events waiting,
    a WebSocket ping every second."""
    env = {
        "SUBSCRIPTIONS_PER_USER": "2",
        "SUBSCRIPTION_QUEUE": "5",
        "SUBSCRIPTION_HEARTBEAT": "1",
    }
    log = tmp_path_factory.mktemp("live-strict") / "serve.log"
    with serve_process(settings, log, env=env) as url:
        yield url


async def test_subscriptions_and_connections_per_user_are_limited(
    users: Users, strict_server: str
) -> None:
    user = users.new_id()
    me = await users.session(user)
    async with live(strict_server, me.token) as first, live(strict_server, me.token) as second:
        await first.subscribe()
        await second.subscribe()
        await wait_subscribed(strict_server, 2)
        # A third subscription is refused, on an open connection...
        op = await first.subscribe()
        message = await first.message(within=5)
        assert message["id"] == op and message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        # ... and so is a third connection, at the handshake.
        refusal = await _refused(
            ws_url(strict_server), {"Cookie": f"psession={me.token}"}, [PROTOCOL]
        )
        assert refusal.response.status_code == 429
        # Another user is not held up by this one.
        theirs = await users.session(users.new_id())
        async with live(strict_server, theirs.token) as client:
            await client.subscribe()
            await wait_subscribed(strict_server, 3)


async def test_a_subscriber_with_too_many_events_waiting_is_dropped(
    settings: Settings, users: Users, strict_server: str
) -> None:
    user = users.new_id()
    me = await users.session(user)
    async with live(strict_server, me.token) as client:
        await client.subscribe()
        await wait_subscribed(strict_server, 1)
        rows = "".join(json.dumps(import_row(user, i)) + "\n" for i in range(20))
        imported = await run_cli(settings, "sessions", "import", stdin=rows)
        assert imported.code == 0, imported
        code, _ = await client.closed(within=10)
    assert code == 1013
    await wait_subscribed(strict_server, 0)


async def test_a_peer_that_stops_answering_pings_is_disconnected(
    users: Users, strict_server: str
) -> None:
    me = await users.session(users.new_id())
    host, port = strict_server.removeprefix("http://").split(":")
    request = (
        "GET /graphql HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n"
        f"Cookie: psession={me.token}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        # Never a pong: the server pings every second and gives up a second after.
        read = b""
        while chunk := await asyncio.wait_for(reader.read(4096), 10):
            read += chunk
        assert b"keepalive ping timeout" in read
    finally:
        writer.close()
    # A client that answers pings stays.
    async with live(strict_server, me.token) as client:
        await client.subscribe()
        await asyncio.sleep(3.0)
        await client.send({"type": "ping"})
        assert (await client.message(within=5))["type"] == "pong"


async def test_events_said_while_the_listening_connection_was_away_still_arrive(
    users: Users, resources: Resources, two_servers: list[str]
) -> None:
    a, _ = two_servers
    user = users.new_id()
    me = await users.session(user)
    async with live(a, me.token) as client:
        await client.subscribe()
        await wait_subscribed(a, 1)
        # Postgres drops every listening connection (a restart, a failover)...
        async with resources.store.pool.acquire() as conn:
            dropped = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                APPLICATION,
            )
            assert dropped >= 1
            # ... and a session is created at that very moment, before they listen again.
        mine = await users.session(user, ip="8.8.8.8")
        event = await client.next_event(within=10)
    assert event["type"] == "CREATED" and event["session"]["id"] == mine.record.id

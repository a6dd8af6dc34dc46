"""Webhooks: session events reach a registered endpoint signed per Standard Webhooks, each once
(several processes dispatch, one at a time), retried with the same id until a 2xx, never to an
endpoint that answered 410 or whose address is not public."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.migrate import migrate
from store.models import utcnow
from tests.app_client import ROUTE, cookie
from tests.cli_runner import import_row, run_cli
from tests.conftest import Users, with_database
from tests.infra import free_port
from tests.servers import serve_process
from tests.webhook_receiver import Received, WebhookReceiver

PATIENCE = 30.0  # seconds for events to arrive (a dispatcher polls every 0.5 s)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
async def endpoint(
    settings: Settings, server: str, receiver: WebhookReceiver
) -> AsyncIterator[dict[str, Any]]:
    """The receiver registered through the CLI (`server` runs a dispatcher); removed after."""
    added = await run_cli(settings, "webhooks", "add", receiver.url)
    assert added.code == 0, added
    registered: dict[str, Any] = json.loads(added.lines[-1])
    yield registered
    removed = await run_cli(settings, "webhooks", "remove", registered["id"])
    assert removed.code == 0, removed


async def eventually(
    receiver: WebhookReceiver, done: Callable[[list[Received]], bool], what: str
) -> list[Received]:
    deadline = time.monotonic() + PATIENCE
    while not done(got := receiver.received):
        assert time.monotonic() < deadline, f"{what}: got {[r.event['type'] for r in got]}"
        await asyncio.sleep(0.1)
    return got


def of_user(received: list[Received], user_id: str) -> list[Received]:
    return [r for r in received if r.event["data"].get("user_id") == user_id]


def delivered(received: list[Received]) -> list[Received]:
    return [r for r in received if 200 <= r.status < 300]


async def test_session_events_arrive_signed_and_once_each(
    settings: Settings,
    resources: Resources,
    users: Users,
    receiver: WebhookReceiver,
    endpoint: dict[str, Any],
    tmp_path: Path,
) -> None:
    assert endpoint["secret"].startswith("whsec_")
    store = resources.store
    user = users.new_id()
    # A second process dispatches too (one at a time): still one delivery per event.
    with serve_process(settings, tmp_path / "serve.log"):
        me = await users.session(user, ip="81.2.69.142", user_agent="Mozilla/5.0 (iPhone)")
        other = await users.session(user, ip="8.8.8.8")
        gone = await users.session(user, ip="1.1.1.1")
        await store.end(gone.token)
        await store.revoke_others(user_id=user, keep_session_id=me.record.id)
        got = await eventually(
            receiver, lambda r: len(of_user(r, user)) >= 5, "five events of the user"
        )
        await asyncio.sleep(1.5)  # a duplicate would come within this
    got = of_user(receiver.received, user)
    events = [r.verified(endpoint["secret"]) for r in got]
    assert sorted(e["type"] for e in events) == sorted(
        ["session.created"] * 3 + ["session.ended", "session.revoked"]
    )
    assert len({r.id for r in got}) == 5  # each event once, each with its own id
    for r in got:
        body = r.body.decode()
        for issued in (me, other, gone):
            assert issued.token not in body and issued.record.token_hash not in body
    created = next(e for e in events if e["data"]["id"] == me.record.id)
    data = created["data"]
    assert data["user_id"] == user and data["client_ip"] == "81.2.69.142"
    assert data["device"]["os"] == "iOS" and data["geo"]["country_code"] == "GB"
    assert data["is_new_location"] is True and data["impossible_travel"] is False
    assert created["timestamp"].endswith("Z")
    revoked = next(e for e in events if e["type"] == "session.revoked")
    assert revoked["data"]["id"] == other.record.id
    assert revoked["data"]["end_reason"] == "revoked"


async def test_a_failing_receiver_gets_the_event_again_with_the_same_id(
    settings: Settings, users: Users, receiver: WebhookReceiver, endpoint: dict[str, Any]
) -> None:
    receiver.statuses = [500, 503]  # then 200 (the test schedule retries after 1 s, then 1 s)
    user = users.new_id()
    await users.session(user)
    got = await eventually(
        receiver, lambda r: len(delivered(of_user(r, user))) == 1, "a delivery after retries"
    )
    attempts = of_user(got, user)
    assert [r.status for r in attempts] == [500, 503, 200]
    assert len({r.id for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1  # the same body every time
    for r in attempts:
        r.verified(endpoint["secret"])


async def test_an_endpoint_that_answers_410_is_disabled(
    settings: Settings, users: Users, receiver: WebhookReceiver, endpoint: dict[str, Any]
) -> None:
    receiver.status = 410
    user = users.new_id()
    await users.session(user)
    await eventually(receiver, lambda r: len(of_user(r, user)) == 1, "one attempt")
    listed = await run_cli(settings, "webhooks", "list")
    mine = [json.loads(line) for line in listed.lines if endpoint["id"] in line]
    assert mine and mine[0]["disabled"] == "410 Gone"
    assert endpoint["secret"] not in listed.stdout  # secrets are masked
    await users.session(user)
    await asyncio.sleep(2)
    assert len(of_user(receiver.received, user)) == 1


async def test_webhooks_test_sends_a_signed_test_event(
    settings: Settings, receiver: WebhookReceiver, endpoint: dict[str, Any]
) -> None:
    result = await run_cli(settings, "webhooks", "test", endpoint["id"])
    assert result.code == 0, result
    [sent] = [r for r in receiver.received if r.event["type"] == "webhook.test"]
    assert sent.verified(endpoint["secret"])["type"] == "webhook.test"


async def test_endpoints_on_private_addresses_are_refused(settings: Settings) -> None:
    strict = settings.model_copy(update={"webhook_allow_private": False})
    for url in (
        "http://127.0.0.1:9/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://localhost/",
        "ftp://example.com/",
    ):
        result = await run_cli(strict, "webhooks", "add", url)
        assert result.code == 2, (url, result)
        assert "cannot be an endpoint" in result.stderr and "Traceback" not in result.stderr


async def register(settings: Settings, url: str) -> dict[str, Any]:
    added = await run_cli(settings, "webhooks", "add", url)
    assert added.code == 0, added
    registered: dict[str, Any] = json.loads(added.lines[-1])
    return registered


async def unregister(settings: Settings, registered: dict[str, Any]) -> None:
    removed = await run_cli(settings, "webhooks", "remove", registered["id"])
    assert removed.code == 0, removed


async def test_a_receiver_that_was_down_gets_the_event_once_it_is_back(
    settings: Settings, server: str, users: Users
) -> None:
    port = free_port()
    registered = await register(settings, f"http://127.0.0.1:{port}/hooks")
    try:
        user = users.new_id()
        await users.session(user)
        await asyncio.sleep(2.5)  # attempts meet a refused connection meanwhile
        with WebhookReceiver(port) as back:
            got = await eventually(back, lambda r: len(of_user(r, user)) == 1, "the event")
            [event] = of_user(got, user)
            assert event.verified(registered["secret"])["type"] == "session.created"
    finally:
        await unregister(settings, registered)


async def test_a_hanging_receiver_holds_up_only_itself(
    settings: Settings, server: str, users: Users
) -> None:
    """The first request to `slow` hangs for 10 s (the dispatcher gives up at 2 s, then tries
    again); `quick` gets its copy of the same event meanwhile."""
    with WebhookReceiver(hang=10.0) as slow, WebhookReceiver() as quick:
        endpoints = [await register(settings, r.url) for r in (slow, quick)]
        try:
            user = users.new_id()
            await users.session(user)
            got = await eventually(
                slow, lambda r: len(of_user(r, user)) == 2, "a retry after the hang"
            )
            first, retry = of_user(got, user)
            assert first.id == retry.id
            [copy] = of_user(quick.received, user)
            assert copy.id == first.id
            assert copy.at < retry.at  # not held back by the hanging endpoint
        finally:
            for registered in endpoints:
                await unregister(settings, registered)


async def test_an_import_of_1000_sessions_is_1000_events(
    settings: Settings, server: str, receiver: WebhookReceiver, endpoint: dict[str, Any]
) -> None:
    users = [Users.new_id() for _ in range(100)]
    rows = "".join(json.dumps(import_row(users[i % 100], i)) + "\n" for i in range(1000))
    started = time.monotonic()
    imported = await run_cli(settings, "sessions", "import", stdin=rows)
    assert imported.code == 0, imported
    wanted = set(users)

    def all_arrived(received: list[Received]) -> bool:
        mine = [r for r in received if r.event["data"].get("user_id") in wanted]
        return len({r.id for r in mine}) >= 1000

    got = await eventually(receiver, all_arrived, "1000 session.created")
    mine = [r for r in got if r.event["data"].get("user_id") in wanted]
    assert {r.event["type"] for r in mine} == {"session.created"}
    assert len({r.id for r in mine}) == 1000
    print(f"1000 imported sessions delivered as webhooks in {time.monotonic() - started:.1f} s")


async def test_an_expiry_and_a_rest_revoke_arrive_too(
    server: str,
    client: httpx.AsyncClient,
    users: Users,
    receiver: WebhookReceiver,
    endpoint: dict[str, Any],
) -> None:
    """An expiry (noticed by the sweep, every second in the tests) and a revoke through the v1
    route each reach the endpoint."""
    user = users.new_id()
    now = utcnow()
    me = await users.session(user)
    expiring = await users.session(
        user, created_at=now - timedelta(hours=1), expires_at=now + timedelta(seconds=1)
    )
    revoked = await users.session(user)
    answer = await client.delete(f"{ROUTE}/{revoked.record.id}", headers=cookie(me.token))
    assert answer.status_code == 204, answer.text

    def ends(received: list[Received]) -> dict[str, str]:
        return {
            r.event["data"]["id"]: r.event["type"]
            for r in delivered(of_user(received, user))
            if r.event["type"] != "session.created"
        }

    got = await eventually(receiver, lambda r: len(ends(r)) == 2, "an expiry and a revoke")
    assert ends(got) == {
        expiring.record.id: "session.expired",
        revoked.record.id: "session.revoked",
    }


@pytest.fixture
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    """The settings on a database of the test's own, freshly migrated: no other process of the
    run (every test app dispatches) can deliver its events."""
    name = f"{settings.database_url.rsplit('/', 1)[-1]}_restart"
    own = settings.model_copy(update={"database_url": with_database(settings.database_url, name)})
    await migrate(own.database_url)
    try:
        yield own
    finally:
        admin = await asyncpg.connect(own.database_url, database="postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_events_pending_when_serve_stops_are_delivered_when_it_starts_again(
    own_database: Settings, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    settings = own_database
    added = await run_cli(settings, "webhooks", "add", receiver.url)
    assert added.code == 0, added
    secret = json.loads(added.lines[-1])["secret"]
    receiver.status = 503  # down: every attempt fails, and stays pending
    user = Users.new_id()
    rows = "".join(json.dumps(import_row(user, i)) + "\n" for i in range(5))
    with serve_process(settings, tmp_path / "first.log"):
        imported = await run_cli(settings, "sessions", "import", stdin=rows)
        assert imported.code == 0, imported
        await eventually(receiver, lambda r: len(of_user(r, user)) >= 5, "first attempts")
    # Stopped with all five pending. Nobody else dispatches on this database.
    receiver.status = 200
    tried = {r.id for r in of_user(receiver.received, user)}
    await asyncio.sleep(2.5)  # past the next retry, had anyone been left to send it
    assert delivered(receiver.received) == []
    with serve_process(settings, tmp_path / "second.log"):
        got = await eventually(
            receiver, lambda r: len(delivered(of_user(r, user))) >= 5, "five deliveries"
        )
        await asyncio.sleep(1.5)  # a duplicate would come within this
    done = delivered(of_user(receiver.received, user))
    assert len(done) == 5 and {r.id for r in done} == tried  # the same ids, each once
    assert all(r.verified(secret)["type"] == "session.created" for r in done)
    assert len(delivered(got)) == 5

"""Geolocation seen through the app: users whose sessions come from chosen addresses, a fake
ip-api server of a test's own, and an app of the test's own that asks it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

from sessions_config.resources import Resources
from sessions_config.settings import Settings
from store.models import utcnow
from store.sessions import IssuedSession, NewSession
from tests.conftest import Users
from tests.ipapi_server import IpApiServer
from tests.servers import serve

_used: set[str] = set()


def fresh_ips(n: int) -> list[str]:
    """n global IPv4 addresses no other test of this run has used (so none is cached yet)."""
    out: list[str] = []
    while len(out) < n:
        ip = f"11.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if ip not in _used:
            _used.add(ip)
            out.append(ip)
    return out


async def make_user(
    resources: Resources, *, active: Sequence[str], history: Sequence[str] = ()
) -> str:
    """A fresh user with one active session per IP in `active` and one past session per IP in
    `history`; returns the token of the first active session."""
    user_id = Users.new_id()
    now = utcnow()
    rows = [NewSession(user_id=user_id, ip=ip, user_agent="pytest") for ip in active]
    for i, ip in enumerate(history):
        created = now - timedelta(hours=2, minutes=i)
        rows.append(
            NewSession(
                user_id=user_id,
                ip=ip,
                user_agent="pytest",
                created_at=created,
                ended_at=created + timedelta(minutes=1),
                end_reason="logout",
            )
        )
    created_sessions: list[IssuedSession] = await resources.store.create_many(rows)
    return created_sessions[0].token


@contextmanager
def own_app(base_settings: Settings, fake: IpApiServer, **settings: Any) -> Iterator[str]:
    """An app of this test's own, with the ip-api provider pointed at `fake`."""
    own = base_settings.model_copy(
        update={"geo_provider": "ip-api", "geo_ipapi_url": fake.url, **settings}
    )
    with serve(own) as url:
        yield url


@asynccontextmanager
async def fake_ipapi() -> AsyncIterator[IpApiServer]:
    fake = IpApiServer().start()
    try:
        yield fake
    finally:
        # stop() joins handler threads; a delayed one gives up at once.
        await asyncio.to_thread(fake.stop)

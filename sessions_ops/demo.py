"""`sessions-api demo`: a demo user with active and past sessions from public IPs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from store.models import EndReason, utcnow
from store.sessions import DEFAULT_TTL, NewSession, SessionStore

DEMO_USER = "demo-user"

MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
ANDROID = (
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
)


@dataclass(frozen=True)
class _Spec:
    ip: str
    user_agent: str
    age: timedelta  # how long ago it was created
    ended_after: timedelta | None = None  # for past sessions: how long it lasted
    reason: EndReason | None = None


# The first one is the session the demo cookie belongs to. One past session is from a private
# address on purpose: it shows what a session without geolocation looks like. Those that never
# ended are older than their lifetime (DEFAULT_TTL): they expired.
_ACTIVE = [
    _Spec("81.2.69.142", MAC_CHROME, timedelta(hours=2)),
    _Spec("2a02:8109:9d40::1", IPHONE, timedelta(days=3)),
    _Spec("24.5.0.1", WINDOWS_FIREFOX, timedelta(days=12)),
]
_PAST = [
    _Spec("89.160.20.112", LINUX_FIREFOX, timedelta(days=20), timedelta(hours=5), "logout"),
    _Spec("2.125.160.216", ANDROID, timedelta(days=26), timedelta(days=2), "revoked"),
    _Spec("217.0.0.1", MAC_CHROME, timedelta(days=40), timedelta(days=1), "logout"),
    _Spec("180.150.0.1", IPHONE, timedelta(days=75)),
    _Spec("192.168.1.20", WINDOWS_FIREFOX, timedelta(days=90), timedelta(hours=1), "logout"),
    _Spec("2a01:e0a:1::1", LINUX_FIREFOX, timedelta(days=120)),
]


class Seeded(NamedTuple):
    token: str  # of the demo cookie's session
    active: int
    past: int


async def seed_demo(store: SessionStore) -> Seeded:
    """Replaces the demo user's sessions; returns the current session's token and the counts."""
    now = utcnow()
    batch = []
    for spec in _ACTIVE + _PAST:
        created_at = now - spec.age
        batch.append(
            NewSession(
                user_id=DEMO_USER,
                ip=spec.ip,
                user_agent=spec.user_agent,
                created_at=created_at,
                expires_at=created_at + DEFAULT_TTL,
                ended_at=created_at + spec.ended_after if spec.ended_after else None,
                end_reason=spec.reason,
            )
        )
    created = await store.replace_user(user_id=DEMO_USER, batch=batch)
    return Seeded(created[0].token, active=len(_ACTIVE), past=len(_PAST))

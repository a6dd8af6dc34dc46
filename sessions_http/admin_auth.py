"""Who calls the admin API: `Authorization: Bearer KEY`, an admin key (store/admin.py) with the
scope the route needs. Never a psession cookie.

No key, or an unknown or revoked one: 401; a key without the scope: 403. A client address
whose checks failed ADMIN_AUTH_FAILURES_PER_MINUTE times in the current minute is refused with
429 until the minute is over, whatever key it sends (counted per process)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from prometheus_client import Counter
from starlette.requests import Request

from sessions_config.resources import Resources
from sessions_http.request_info import client_address, request_id
from sessions_http.responses import HttpError
from store import admin
from store.admin import Scope
from store.models import Actor

log = logging.getLogger(__name__)

FAILURES = Counter(
    "sessions_api_admin_auth_failures_total",
    "Admin API requests refused, by reason: missing (no bearer key), unknown (not a key, or a "
    "revoked one), scope (the key lacks the route's scope), limited (too many failures from "
    "the client's address).",
    ["reason"],
)

WINDOW = 60.0
# Client addresses remembered; the oldest are forgotten first.
MAX_ADDRESSES = 10_000


class FailedAttempts:
    """Failed key checks per client address in the current window of WINDOW seconds."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def wait(self, address: str) -> int | None:
        """Seconds the address must wait before trying again, or None if it may try now."""
        started, count = self._counts.get(address, (0.0, 0))
        left = started + WINDOW - time.monotonic()
        if left <= 0 or count < self.limit:
            return None
        return max(1, int(left + 0.999))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        started, count = self._counts.pop(address, (now, 0))
        if now - started >= WINDOW:
            started, count = now, 0
        self._counts[address] = (started, count + 1)
        while len(self._counts) > MAX_ADDRESSES:
            self._counts.popitem(last=False)


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def admin_actor(request: Request, needs: Scope) -> Actor:
    """The admin calling, as the audit names it; HttpError (401, 403, 429) if it may not."""
    resources: Resources = request.app.state.resources
    attempts: FailedAttempts = request.app.state.admin_attempts
    address = client_address(request)
    wait = attempts.wait(address)
    if wait is not None:
        FAILURES.labels("limited").inc()
        message = f"Too many failed attempts from this address; try again in {wait} s."
        raise HttpError(429, "rate_limited", message, {"Retry-After": str(wait)})
    key = _bearer(request)
    if key is None:
        FAILURES.labels("missing").inc()
        attempts.failed(address)
        raise _unauthenticated("Send an admin key: Authorization: Bearer KEY.")
    # (Postgres down: the app's handler answers 503.)
    found = await admin.key_of(resources.store.pool, key)
    if found is None:
        FAILURES.labels("unknown").inc()
        attempts.failed(address)
        log.warning("admin API: refused an unknown or revoked key from %s", address)
        raise _unauthenticated("This admin key is unknown or revoked.")
    if needs not in found.scopes:
        FAILURES.labels("scope").inc()
        raise HttpError(403, "forbidden", f"This admin key lacks the {needs} scope.")
    return Actor(
        "admin",
        name=found.name,
        key_id=found.id,
        request_id=request_id(request),
        client_addr=address,
    )


def _unauthenticated(message: str) -> HttpError:
    return HttpError(401, "unauthenticated", message, {"WWW-Authenticate": "Bearer"})

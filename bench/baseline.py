"""A hand-written `GET /v1/users/me/sessions`: the fastest this design can be on this stack.

    .venv/bin/python -m bench.baseline --port PORT

One Starlette route, written without the service's code (no resolvers/, graph/, store/; only
sessions_geo's rule for which addresses are public): it reads the keys and rows that
docs/DATA.md describes and writes the service's v1 JSON, byte for byte
(tests/bench/test_baseline.py checks it). The same round trips as the service: the cookie's
pointer (GET); one script on the user's slot that reads the cookie's HASH, the user's index and
the HASHes it names; one Postgres query for history; then one MGET of the geolocation cache.
Its Postgres connections skip asyncpg's reset query when handed back to the pool (they hold no
session state).

What it leaves out, since none of it changes a page read from a warm cache: recording the
session's activity (`last_seen_at`, written at most once a minute), finishing half-done ends, the
checks on cache entries and the provider (a cache miss or an unusable entry is simply null),
bounds on waits, per-user limits, metrics, CORS and the origin check. Configured by the
service's own environment variables: DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX, GEO_PROVIDER,
GEO_MMDB_PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sessions_geo.lookup import global_ip

ROUTE = "/v1/users/me/sessions"
TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,256}")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
GEO_FIELDS = (
    "city", "region_name", "country_code", "lat", "lon",
    "isp", "org", "is_mobile", "is_proxy", "is_hosting",
)  # fmt: skip
HISTORY_SQL = """
SELECT token_suffix, created_at, abbrev(client_ip) AS client_ip, user_agent
  FROM sessions
 WHERE user_id = $1 AND (ended_at IS NOT NULL OR expires_at <= $2)
 ORDER BY created_at DESC, id DESC
 LIMIT $3
"""
# The cookie's session and its user's active ones, in one round trip: the index and the HASHes
# share the user's hash tag. Returns {{member, HASH, member, HASH, ...}, the cookie's HASH}.
READ_SCRIPT = """#!lua flags=no-writes
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local listed = {}
for _, member in ipairs(members) do
  listed[#listed + 1] = member
  listed[#listed + 1] = redis.call('HGETALL', ARGV[2] .. member)
end
return {listed, redis.call('HGETALL', KEYS[2])}
"""
HEADERS = {"Cache-Control": "no-store"}
Hash = dict[str, str]  # a session HASH, as read with decode_responses
UNAUTHENTICATED = {
    "error": {
        "code": "unauthenticated",
        "message": "Sign in first: no active session for this psession cookie.",
    }
}


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str
    prefix: str
    provider: str  # the geo cache's provider name: offline, offline+city or ip-api

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        provider = env.get("GEO_PROVIDER", "offline")
        if provider == "offline" and env.get("GEO_MMDB_PATH"):
            provider = "offline+city"
        return cls(
            database_url=env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/sessions"),
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            prefix=env.get("REDIS_KEY_PREFIX", "psession:"),
            provider=provider,
        )


def _instant(text: str) -> datetime:
    """A stored timestamp as a UTC datetime to the second (a zone-less one is UTC)."""
    value = datetime.fromisoformat(text)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=65536)
def _python_ip(text: str) -> str:
    """Postgres's text of an address as Python writes it (the service decodes `inet` with
    asyncpg, into `ipaddress` objects): they differ only for IPv6 with an embedded IPv4 address,
    which Postgres writes dotted (`::ffff:1.2.3.4`) and Python 3.11 in hex (`::ffff:102:304`)."""
    if ":" not in text or "." not in text:
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


# The service's rule for which addresses have a geolocation (public ones, IPv4-mapped as IPv4),
# cached: a hand-written service would classify each address once.
_global_ip = lru_cache(maxsize=65536)(global_ip)


def _hash(flat: list[str]) -> Hash:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _active(user_id: str, listed: list[Any], now: datetime) -> list[tuple[str, Hash]]:
    """(token hash, HASH) of the user's active sessions, newest first."""
    found = ((h, _hash(flat)) for h, flat in zip(listed[::2], listed[1::2], strict=True))
    active = [(h, s) for h, s in found if _is_active(s, now) and s["user_id"] == user_id]
    active.sort(key=_age, reverse=True)
    return active


class _ReadOnlyConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no hints
    """A connection that only ever runs HISTORY_SQL has no session state to reset: handing it
    back to the pool skips asyncpg's reset query, a round trip per request."""

    def get_reset_query(self) -> str:
        return ""


class Baseline:
    """The page's reads, on a Redis client and a Postgres pool of its own."""

    def __init__(self, config: Config, redis: Redis, pool: asyncpg.Pool) -> None:
        self._prefix = config.prefix
        self._geo_prefix = f"{config.prefix}geo:{config.provider}:"
        self._redis = redis
        self._pool = pool

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[Baseline]:
        # The service's pool sizes: 50 Redis connections, 10 Postgres ones.
        redis = Redis.from_url(config.redis_url, decode_responses=True, max_connections=50)
        pool = await asyncpg.create_pool(
            config.database_url, min_size=1, max_size=10, connection_class=_ReadOnlyConnection
        )
        try:
            yield cls(config, redis, pool)
        finally:
            await pool.close()
            await redis.aclose()

    async def page(self, token: str | None, limit: int = DEFAULT_LIMIT) -> dict[str, Any] | None:
        """The v1 body for this cookie; None when it names no active session."""
        if token is None or not TOKEN.fullmatch(token):
            return None
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        now = datetime.now(UTC).replace(microsecond=0)
        user_id = await self._redis.get(f"{self._prefix}token:{token_hash}")
        if user_id is None:
            return None
        tag = f"{self._prefix}{{user:{user_id}}}"
        listed, current = await self._redis.eval(  # type: ignore[misc]
            READ_SCRIPT,
            2,
            f"{tag}:sessions",
            f"{tag}:session:{token_hash}",
            int(now.timestamp()),
            f"{tag}:session:",
        )
        session = _hash(current)
        if not _is_active(session, now) or session["user_id"] != user_id:
            return None
        active = _active(user_id, listed, now)
        history = await self._history(user_id, now, limit)
        geo = await self._geo([s.get("client_ip", "") for _, s in active] + [r[2] for r in history])
        return {
            "sessions": [_session(s, h == token_hash, geo) for h, s in active],
            "history": [_past(row, geo) for row in history],
        }

    async def _history(self, user_id: str, now: datetime, limit: int) -> list[tuple[Any, ...]]:
        """(token_suffix, created_at, client_ip, user_agent) of the user's past sessions."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(HISTORY_SQL, user_id, now, limit)
        return [(r[0], r[1], _python_ip(r[2]), r[3]) for r in rows]

    async def _geo(self, ips: list[str]) -> dict[str, dict[str, Any] | None]:
        """Raw IP -> its cached geolocation, in the v1 key order (absent: null)."""
        canonical = {ip: _global_ip(ip) for ip in ips}
        wanted = list(dict.fromkeys(ip for ip in canonical.values() if ip is not None))
        if not wanted:
            return {}
        texts = await self._redis.mget([self._geo_prefix + ip for ip in wanted])
        cached = {ip: json.loads(t) for ip, t in zip(wanted, texts, strict=True) if t}
        geo = {ip: {k: v.get(k) for k in GEO_FIELDS} for ip, v in cached.items() if v}
        return {raw: geo.get(ip) for raw, ip in canonical.items() if ip is not None}


def _age(item: tuple[str, Hash]) -> tuple[datetime, str]:
    """The service's order of active sessions: by created_at, then id."""
    return _instant(item[1]["created_at"]), item[1].get("id", "").lower()


def _is_active(fields: Mapping[str, str], now: datetime) -> bool:
    return (
        bool(fields)
        and "ended_at" not in fields
        and "user_id" in fields
        and "expires_at" in fields
        and _instant(fields["expires_at"]) > now
    )


def _session(fields: Mapping[str, str], is_current: bool, geo: Mapping[str, Any]) -> Any:
    ip = fields.get("client_ip", "")
    return {
        "token_suffix": fields.get("token_suffix", ""),
        "created_at": _iso(_instant(fields["created_at"])),
        "expires_at": _iso(_instant(fields["expires_at"])),
        "client_ip": ip,
        "user_agent": fields.get("user_agent", ""),
        "geo": geo.get(ip),
        "is_current": is_current,
    }


def _past(row: Any, geo: Mapping[str, Any]) -> Any:
    return {
        "token_suffix": row[0],
        "created_at": _iso(row[1]),
        "client_ip": row[2],
        "user_agent": row[3],
        "geo": geo.get(row[2]),
    }


def _json(body: Any, status: int = 200) -> Response:
    # Starlette's JSONResponse encoding, which the service's REST route uses.
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(text.encode(), status, HEADERS, media_type="application/json")


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if raw.isascii() and raw.isdigit() and len(raw) <= 9 and int(raw) <= MAX_LIMIT:
        return int(raw)
    return None


async def sessions_page(request: Request) -> Response:
    limit = _limit(request)
    if limit is None:
        message = f"limit must be a whole number from 0 to {MAX_LIMIT}."
        return _json({"error": {"code": "bad_request", "message": message}}, 400)
    baseline: Baseline = request.app.state.baseline
    body = await baseline.page(request.cookies.get("psession"), limit)
    return _json(UNAUTHENTICATED, 401) if body is None else _json(body)


def create_app(config: Config | None = None) -> Starlette:
    """The baseline's app; without a config it is read from the environment at start-up. An app
    served without its lifespan needs `app.state.baseline` set by its caller."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Baseline.open(config or Config.from_env(os.environ)) as baseline:
            app.state.baseline = baseline
            yield

    return Starlette(routes=[Route(ROUTE, sessions_page)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

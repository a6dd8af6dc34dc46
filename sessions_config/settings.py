"""Configuration, read from environment variables (documented in the README)."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/sessions"
    # A streaming replica of DATABASE_URL's database, for history pages and the signals'
    # timeline (store/replica.py); none by default: every read goes to DATABASE_URL.
    database_replica_url: str | None = None
    # Seconds the replica may be behind before those reads go to DATABASE_URL instead.
    database_replica_max_lag: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # standalone: REDIS_URL is the one server. sentinel: the master the sentinels name
    # (REDIS_SENTINELS; REDIS_URL then gives only the database number and credentials).
    # cluster: REDIS_URL names any one node of a Redis Cluster, and the client finds the others
    # (keys are laid out for it: docs/DATA.md). Before redis_url, whose check depends on it.
    redis_mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis key this service reads or writes starts with this, so one Redis can host
    # several deployments (and each test run gets a keyspace of its own).
    redis_key_prefix: str = "psession:"
    # Sentinel mode: the sentinels, `host:port,host:port,...`, and the name of the master they
    # watch (their `sentinel monitor NAME ...`).
    redis_sentinels: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list, validate_default=True
    )
    redis_sentinel_service: str | None = Field(default=None, validate_default=True)
    redis_sentinel_password: SecretStr | None = None
    # Replicas that must acknowledge a session's end before it counts as done (Redis WAIT):
    # replication is asynchronous, and an end the master never passed on would be undone by a
    # failover. Unset: 1 in sentinel mode, else 0 (no waiting).
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=100)

    geo_provider: Literal["offline", "ip-api"] = "offline"
    geo_ipapi_url: str = "http://ip-api.com"
    geo_ipapi_key: SecretStr | None = None
    geo_mmdb_path: str | None = None
    geo_cache_ttl: int = Field(default=7 * 24 * 3600, ge=1)
    # Lookups that failed (provider said "fail" or had no data) are remembered for less long.
    geo_failure_ttl: int = Field(default=15 * 60, ge=1)
    geo_timeout: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    # How long a page waits for the provider; the lookup goes on up to geo_timeout regardless.
    geo_wait: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    # Origins (scheme://host[:port]) whose pages may make cookie-authenticated requests that
    # change state, and read answers cross-origin (CORS). Comma-separated.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # text: one readable line per event; json: one JSON object per line (sessions_config/logs.py).
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        return _checked_url(value, ("postgres", "postgresql"), "a postgresql:// URL")

    @field_validator("database_replica_url")
    @classmethod
    def _replica_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _checked_url(value, ("postgres", "postgresql"), "a postgresql:// URL")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("redis_mode") == "sentinel":
            # The sentinels name a TCP address; TLS to it is not supported yet.
            return _checked_url(value, ("redis",), "a redis:// URL with REDIS_MODE=sentinel")
        return _checked_url(
            value, ("redis", "rediss", "unix"), "a redis://, rediss:// or unix:// URL"
        )

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        return parse_sentinels(value) if isinstance(value, str) else value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_for_mode(
        cls, value: list[tuple[str, int]], info: ValidationInfo
    ) -> list[tuple[str, int]]:
        if info.data.get("redis_mode") == "sentinel" and not value:
            raise ValueError("REDIS_MODE=sentinel needs the sentinels, as host:port,host:port")
        return value

    @field_validator("redis_sentinel_service")
    @classmethod
    def _service_for_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value else None
        if info.data.get("redis_mode") != "sentinel":
            return value
        if not value:
            raise ValueError("REDIS_MODE=sentinel needs the name of the master the sentinels watch")
        return value

    @field_validator("redis_wait_replicas")
    @classmethod
    def _wait_for_mode(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and info.data.get("redis_mode") == "cluster":
            # WAIT answers for the one node it is sent to, and a cluster's ends span nodes.
            raise ValueError("waiting for replicas is not supported with REDIS_MODE=cluster")
        return value

    @property
    def wait_replicas(self) -> int:
        """Replicas that must acknowledge an end (REDIS_WAIT_REPLICAS, or its default)."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_mode == "sentinel" else 0

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    # HTTP limits on a request's head (sessions_http/serving.py); a request over one gets 414 or
    # 431.
    http_max_url_bytes: int = Field(default=8 * 1024, ge=256, le=1024 * 1024)
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    http_max_headers: int = Field(default=100, ge=10, le=10_000)

    # --- Fairness between users (graph/fairness.py) ---
    # Requests of one signed-in user that may execute at once in one server process; the next
    # is refused (429 with Retry-After on REST, RATE_LIMITED in GraphQL) until one finishes.
    user_max_concurrent_requests: int = Field(default=4, ge=1, le=10_000)
    # What a refused client is told to wait before trying again, in seconds (Retry-After).
    rate_limit_retry_after: int = Field(default=1, ge=1, le=3600)

    # -- Bounds on every wait, and pool sizes (a hung or restarted Postgres or Redis) ----------
    # Seconds: each Postgres statement or Redis command, from sending it to its answer.
    storage_timeout: float = Field(default=5.0, gt=0)
    # Seconds to open a connection to Postgres or Redis (TCP, then Postgres's handshake).
    storage_connect_timeout: float = Field(default=2.0, gt=0)
    # Seconds to wait for a free pooled connection (for Postgres, opening one included).
    pool_acquire_timeout: float = Field(default=2.0, gt=0)
    # Connections per process.
    pg_pool_size: int = Field(default=10, ge=1, le=1000)
    redis_pool_size: int = Field(default=50, ge=1, le=10000)
    # Seconds for a whole HTTP request, from its arrival to the start of its answer.
    request_timeout: float = Field(default=10.0, gt=0)
    # Seconds /readyz waits for each dependency (both are checked at once).
    ready_timeout: float = Field(default=2.0, gt=0)

    # -- Session events ---------------------------------------------------------------------------
    # Whether `serve` also runs the event workers: the expiry sweep and the webhook dispatcher
    # (off: run `sessions-api webhooks run` somewhere, or events wait).
    event_workers: bool = True
    # Seconds between two looks for sessions that expired, each of which gets a session.expired
    # event (store/expiry.py): an expiry is recorded within about this long.
    expiry_sweep_interval: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)

    # Webhooks (sessions_events/): the waits between a failed delivery's attempts (after the
    # first, after the second, ...; then it has failed), the bound on one attempt, and whether
    # endpoints on loopback or private addresses are allowed (never in production: SSRF).
    webhook_retry_schedule: Annotated[list[timedelta], NoDecode] = Field(
        default_factory=lambda: [parse_span(s) for s in "5s,5m,30m,2h,5h,10h".split(",")]
    )
    webhook_timeout: float = Field(default=5.0, gt=0, le=60, allow_inf_nan=False)
    webhook_allow_private: bool = False

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [parse_span(part) for part in value.split(",") if part.strip()]
        return value

    # Live updates (GraphQL subscriptions over WebSocket at /graphql, sessions_http/live.py):
    # how many `sessionEvents` subscriptions, and WebSocket connections, one user may hold in one
    # process, and all users together; events a subscriber may have waiting before it is
    # dropped as too slow; seconds between WebSocket pings (a peer that has not answered one
    # within as long again is disconnected).
    subscriptions_per_user: int = Field(default=10, ge=1, le=1000)
    subscriptions_per_process: int = Field(default=10_000, ge=1, le=1_000_000)
    subscription_queue: int = Field(default=100, ge=1, le=100_000)
    subscription_heartbeat: float = Field(default=20.0, gt=0, le=3600, allow_inf_nan=False)

    # The admin API (/admin/v1, README "For login services and support"): `host:port` of a
    # listener of its own (else it shares the main one, and answers 404 there when this is
    # set), and the failed key checks one client address may make per minute before it is
    # refused (429) for the rest of that minute.
    admin_listen: str | None = None
    admin_auth_failures_per_minute: int = Field(default=10, ge=1, le=10_000)

    @field_validator("admin_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("ADMIN_LISTEN is host:port, e.g. 127.0.0.1:8081")
        return value.strip()

    @property
    def admin_address(self) -> tuple[str, int] | None:
        """ADMIN_LISTEN as (host, port); None when admin routes share the main listener."""
        if self.admin_listen is None:
            return None
        host, _, port = self.admin_listen.rpartition(":")
        return host.strip("[]"), int(port)

    # -- History retention (`sessions-api prune`) -----------------------------------------------
    # How long past sessions are kept after they ended: `400d` (days) or `36h` (hours).
    history_retention: timedelta = timedelta(days=400)
    # How long audit rows are kept (`prune` deletes older ones too); same syntax.
    audit_retention: timedelta = timedelta(days=400)

    @field_validator("history_retention", "audit_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        return parse_age(value) if isinstance(value, str) else value


# Ages are whole days or hours: enough for retention, and nothing to misread.
_AGE = re.compile(r"(\d{1,6})([dh])")
_AGE_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1)}
MAX_AGE = timedelta(days=36_500)


def parse_age(text: str) -> timedelta:
    """`400d` or `36h` as a duration, from 1 hour to 100 years; ValueError says what is wrong."""
    match = _AGE.fullmatch(text.strip().lower())
    age = int(match.group(1)) * _AGE_UNITS[match.group(2)] if match else None
    if age is None or not timedelta(hours=1) <= age <= MAX_AGE:
        raise ValueError(
            f"{text[:40]!r} is not an age such as 400d (days) or 36h (hours), from 1h to 36500d"
        )
    return age


_SPAN = re.compile(r"(\d{1,6})([smhd])")
_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_span(text: str) -> timedelta:
    """`5s`, `5m`, `2h` or `1d` as a duration, from 1 second to 30 days."""
    match = _SPAN.fullmatch(text.strip().lower())
    span = timedelta(seconds=int(match.group(1)) * _SPAN_UNITS[match.group(2)]) if match else None
    if span is None or not timedelta(seconds=1) <= span <= timedelta(days=30):
        raise ValueError(f"{text[:40]!r} is not a wait such as 5s, 5m, 2h or 1d (1s to 30d)")
    return span


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`host:port,[::1]:port` as (host, port) pairs; ValueError names the first bad one."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item[:60]!r} is not host:port")
        found.append((host, int(port)))
    return found


def _checked_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    """The URL if its scheme is one of these and every port in it is a number; else a clear
    error at start-up rather than a traceback at the first connection."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(f"must be {what}") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must be {what}")
    # libpq URLs may list several hosts (`h1:5432,h2:5433`), which urlsplit's .port refuses.
    for host in parts.netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        port = port.rpartition(":")[2] if ":" in port else ""
        if port and not port.isdigit():
            raise ValueError(f"must be {what} with numeric ports")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

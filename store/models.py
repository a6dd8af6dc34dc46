"""Plain records passed between the stores and the rest of the service."""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

EndReason = Literal["logout", "revoked", "expired"]
END_REASONS: tuple[EndReason, ...] = ("logout", "revoked", "expired")
# The reasons a writer ends a session for (expiry is not written: time does it).
WRITER_END_REASONS: tuple[EndReason, ...] = ("logout", "revoked")


# The earliest time a session may carry (Postgres keeps earlier ones, but asyncpg writes the
# year-1 minimum as -infinity); also the origin of history cursors.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# User agents are stored, and parsed, up to this many characters.
MAX_USER_AGENT = 1024


def canonical_session_id(text: str) -> str | None:
    """A session id in the one spelling records carry (lowercase, hyphenated), or None if it is
    not a UUID. Postgres reads `{...}`, `urn:uuid:...` and upper case as the same id, so ids are
    compared only in this form."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def utcnow() -> datetime:
    """Now, in UTC, to the second: every stored timestamp has second precision."""
    return datetime.now(UTC).replace(microsecond=0)


def to_utc_second(value: datetime) -> datetime:
    """A timezone-aware UTC datetime truncated to the second (naive input is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def format_timestamp(value: datetime) -> str:
    """The one timestamp format of the API and of Redis: 2026-03-01T10:00:00Z."""
    if type(value) is datetime:
        return _format_instant(value)
    return _format(value)


def _format(value: datetime) -> str:
    # isoformat, not strftime: %Y does not pad years before 1000 ("1-01-01T…" is not ISO 8601).
    return to_utc_second(value).isoformat().replace("+00:00", "Z")


# Each time is written once per process: a page shows the same ones on every look. Datetimes
# that are equal are the same instant (or the same naive time), which is all the text says.
_format_instant = functools.lru_cache(maxsize=16384)(_format)


def parse_timestamp(text: str) -> datetime:
    """Parses ISO 8601; a value without a zone is taken as UTC."""
    try:
        return to_utc_second(datetime.fromisoformat(text.strip()))
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{text[:40]!r} is out of range in UTC") from None


ActorType = Literal["admin", "user", "cli"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changed a session: recorded in the audit trail, and (type and name) in its event.
    Never a secret: an admin key is named by its name and id, never by itself."""

    type: ActorType
    name: str | None = None  # the admin key's name
    key_id: str | None = None
    request_id: str | None = None
    client_addr: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "type": self.type,
                "name": self.name,
                "key_id": self.key_id,
                "request_id": self.request_id,
                "client_addr": self.client_addr,
            }
        )


# The `sessions-api` command.
CLI = Actor("cli")


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session, as both stores know it. The raw token is never part of it."""

    id: str
    user_id: str
    token_hash: str
    token_suffix: str
    created_at: datetime
    expires_at: datetime
    client_ip: str
    user_agent: str
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    # When the session last authenticated a request (active sessions only; kept in Redis).
    last_seen_at: datetime | None = None


class TimelineEntry(NamedTuple):
    """One of a user's sessions, active or past, as the location signals need it."""

    id: str
    created_at: datetime
    client_ip: str


class PagePosition(NamedTuple):
    """Where a history page starts: after the session with this (created_at, id)."""

    created_at: datetime
    id: str


class HistoryRows(NamedTuple):
    """One page of a user's history, and whether another page follows."""

    records: list[SessionRecord]
    has_next: bool


def session_fields(record: SessionRecord) -> dict[str, Any]:
    """A session's fields as the CLI and the admin API show them (never its token or hash)."""
    return {
        "id": record.id,
        "user_id": record.user_id,
        "token_suffix": record.token_suffix,
        "created_at": format_timestamp(record.created_at),
        "expires_at": format_timestamp(record.expires_at),
        "last_seen_at": (
            format_timestamp(record.last_seen_at) if record.last_seen_at is not None else None
        ),
        "client_ip": record.client_ip,
        "user_agent": record.user_agent,
    }

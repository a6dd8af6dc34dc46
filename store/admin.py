"""The admin API's storage (migration 0006): admin keys, kept as hashes, and the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from store.models import Actor, format_timestamp, utcnow
from store.records import _call

Scope = Literal["sessions:read", "sessions:write"]
SCOPES: tuple[Scope, ...] = ("sessions:read", "sessions:write")
# A key: this prefix (so that secret scanners and people can tell one), then 256 random bits.
KEY_PREFIX = "sak_"
MAX_NAME = 100
# How often a key's last_used_at is written, at most.
LAST_USED_EVERY = timedelta(minutes=1)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 in hex. Keys are random, so no salt or stretching is needed to keep them safe."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_KEY_COLUMNS = "id::text, name, scopes, created_at, last_used_at, revoked_at"


def _key(row: Any) -> AdminKey:
    return AdminKey(row[0], row[1], tuple(row[2]), row[3], row[4], row[5])


async def create_key(
    pool: asyncpg.Pool, *, name: str, scopes: Sequence[Scope]
) -> tuple[AdminKey, str]:
    """A new key with these scopes; returns it and the key itself, which exists nowhere else."""
    if not name.strip() or len(name) > MAX_NAME or "\x00" in name:
        raise ValueError(f"a key's name is 1 to {MAX_NAME} characters")
    unknown = set(scopes) - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"scopes are {', '.join(SCOPES)}")
    key = new_key()
    row = await _call(
        pool,
        lambda c: c.fetchrow(
            f"""INSERT INTO admin_keys (id, name, key_hash, scopes) VALUES ($1, $2, $3, $4)
                RETURNING {_KEY_COLUMNS}""",  # noqa: S608
            uuid.uuid4(),
            name,
            hash_key(key),
            sorted(set(scopes)),
        ),
    )
    return _key(row), key


async def list_keys(pool: asyncpg.Pool) -> list[AdminKey]:
    rows = await _call(
        pool,
        lambda c: c.fetch(f"SELECT {_KEY_COLUMNS} FROM admin_keys ORDER BY created_at, id"),  # noqa: S608
        retry=True,
    )
    return [_key(r) for r in rows]


async def revoke_key(pool: asyncpg.Pool, key_id: str) -> AdminKey | None:
    """Revokes a key (at once: every request checks it); None if there is no such key."""
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        return None
    row = await _call(
        pool,
        lambda c: c.fetchrow(
            f"""UPDATE admin_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
                RETURNING {_KEY_COLUMNS}""",  # noqa: S608
            wanted,
        ),
        retry=True,
    )
    return _key(row) if row else None


async def key_of(pool: asyncpg.Pool, key: str) -> AdminKey | None:
    """The active key this is, or None; records that it was used (at most once a minute)."""
    wanted = hash_key(key)
    row = await _call(
        pool,
        lambda c: c.fetchrow(
            f"""SELECT {_KEY_COLUMNS}, key_hash FROM admin_keys
                 WHERE key_hash = $1 AND revoked_at IS NULL""",  # noqa: S608
            wanted,
        ),
        retry=True,
    )
    # The index found it by its hash; the comparison that decides takes the same time for
    # every key.
    if row is None or not hmac.compare_digest(row[6], wanted):
        return None
    found = _key(row)
    if found.last_used_at is None or found.last_used_at < utcnow() - LAST_USED_EVERY:
        # A write at most once a minute per key, not one per request.
        await _call(
            pool,
            lambda c: c.execute(
                "UPDATE admin_keys SET last_used_at = now() WHERE id = $1::uuid", found.id
            ),
            retry=True,
        )
    return found


# -- the audit trail -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor_type: str
    actor_name: str | None
    actor_key_id: str | None
    action: str
    target_user_id: str | None
    target_session_id: str | None
    request_id: str | None
    client_addr: str | None
    details: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """As the admin API and `sessions-api audit` show it."""
        return {
            "seq": self.seq,
            "at": format_timestamp(self.at),
            "actor": {
                "type": self.actor_type,
                "name": self.actor_name,
                "key_id": self.actor_key_id,
            },
            "action": self.action,
            "user_id": self.target_user_id,
            "session_id": self.target_session_id,
            "request_id": self.request_id,
            "client_addr": self.client_addr,
            "details": self.details,
        }


async def record(
    pool: asyncpg.Pool,
    actor: Actor,
    action: str,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """One audit row. (Ends record their own, with the end: records.end.)"""
    await _call(
        pool,
        lambda c: c.execute(
            """INSERT INTO audit_log (actor_type, actor_name, actor_key_id, action,
                   target_user_id, target_session_id, request_id, client_addr, details)
               VALUES ($1, $2, $3::uuid, $4, $5, $6::uuid, $7, $8, $9::jsonb)""",
            actor.type,
            actor.name,
            actor.key_id,
            action,
            user_id,
            session_id,
            actor.request_id,
            actor.client_addr,
            json.dumps(details) if details is not None else None,
        ),
    )


async def audit_page(
    pool: asyncpg.Pool, *, user_id: str | None, first: int, before_seq: int | None
) -> list[AuditEntry]:
    """Up to `first` rows (of one target user, if given), newest first, older than
    `before_seq` if given."""
    rows = await _call(
        pool,
        lambda c: c.fetch(
            """SELECT seq, at, actor_type, actor_name, actor_key_id::text, action,
                      target_user_id, target_session_id::text, request_id, client_addr, details
                 FROM audit_log
                WHERE ($1::text IS NULL OR target_user_id = $1)
                  AND ($2::bigint IS NULL OR seq < $2)
                ORDER BY seq DESC LIMIT $3""",
            user_id,
            before_seq,
            first,
        ),
        retry=True,
    )
    return [_entry(r) for r in rows]


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        seq=r[0],
        at=r[1],
        actor_type=r[2],
        actor_name=r[3],
        actor_key_id=r[4],
        action=r[5],
        target_user_id=r[6],
        target_session_id=r[7],
        request_id=r[8],
        client_addr=r[9],
        details=json.loads(r[10]) if r[10] is not None else None,
    )


async def prune_audit(pool: asyncpg.Pool, *, before: datetime, limit: int) -> int:
    """Deletes up to `limit` audit rows older than `before`, oldest first; returns how many."""
    status = await _call(
        pool,
        lambda c: c.execute(
            """DELETE FROM audit_log WHERE seq IN (
                   SELECT seq FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)""",
            before,
            limit,
        ),
    )
    return int(str(status).rsplit(" ", 1)[-1])

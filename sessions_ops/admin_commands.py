"""For login services and support staff: `sessions end-all`, `sessions list`, `admin-keys …`
and `audit` (README, "For login services and support")."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from sessions_config.settings import Settings
from sessions_ops.output import say
from store import admin
from store.admin import SCOPES, AdminKey
from store.models import CLI, WRITER_END_REASONS, format_timestamp, session_fields


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, separators=(",", ":")), flush=True)


def _time(value: Any) -> str | None:
    return format_timestamp(value) if value is not None else None


def key_line(key: AdminKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": format_timestamp(key.created_at),
        "last_used_at": _time(key.last_used_at),
        "revoked_at": _time(key.revoked_at),
    }


def _session_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a session id") from None


def _key_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a key id") from None


async def end_all(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        count = await res.store.end_all(
            user_id=args.user_id,
            reason=args.reason,
            except_session_id=args.except_session,
            actor=CLI,
        )
        await admin.record(
            res.store.pool,
            CLI,
            "user.sessions.end_all",
            user_id=args.user_id,
            details={"count": count, "reason": args.reason, "except": args.except_session},
        )
    _print({"count": count})
    return 0


async def list_sessions(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        for record in await res.store.list_active_for_user(user_id=args.user_id):
            _print(session_fields(record))
    return 0


async def create_key(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    try:
        async with open_resources(settings, geo=False) as res:
            key, secret = await admin.create_key(res.store.pool, name=args.name, scopes=args.scope)
            await admin.record(
                res.store.pool,
                CLI,
                "admin_key.created",
                details={"id": key.id, "name": key.name, "scopes": list(key.scopes)},
            )
    except ValueError as exc:
        say(f"{exc}")
        return 2
    _print({"id": key.id, "name": key.name, "scopes": list(key.scopes), "key": secret})
    return 0


async def list_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        for key in await admin.list_keys(res.store.pool):
            _print(key_line(key))
    return 0


async def revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        key = await admin.revoke_key(res.store.pool, args.id)
        if key is not None:
            await admin.record(
                res.store.pool, CLI, "admin_key.revoked", details={"id": key.id, "name": key.name}
            )
    if key is None:
        say(f"no admin key {args.id}")
        return 1
    _print(key_line(key))
    return 0


async def audit(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        entries = await admin.audit_page(
            res.store.pool, user_id=args.user_id, first=args.limit, before_seq=None
        )
    for entry in entries:
        _print(entry.as_json())
    return 0


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("a number from 1 to 10000")
    return value


def add_session_commands(ssub: Any) -> None:
    """`sessions end-all` and `sessions list`."""
    cmd = ssub.add_parser(
        "end-all", help="end all of a user's active sessions (sign out everywhere)"
    )
    cmd.add_argument("--user-id", required=True, help="whose sessions to end")
    cmd.add_argument(
        "--reason",
        choices=WRITER_END_REASONS,
        default="revoked",
        help="revoked (the default) or logout",
    )
    cmd.add_argument(
        "--except-session", type=_session_id, metavar="SESSION_ID", help="keep this one"
    )
    cmd.set_defaults(func=end_all)
    cmd = ssub.add_parser("list", help="a user's active sessions, as JSON lines (no tokens)")
    cmd.add_argument("--user-id", required=True, help="whose sessions to list")
    cmd.set_defaults(func=list_sessions)


def add_key_commands(sub: Any) -> None:
    """`admin-keys create|list|revoke`."""
    cmd = sub.add_parser("create", help="make a key; prints it once, with its id")
    cmd.add_argument("--name", required=True, help="who or what uses it (shown in the audit)")
    cmd.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        required=True,
        help="repeatable: sessions:read (look up), sessions:write (revoke)",
    )
    cmd.set_defaults(func=create_key)
    sub.add_parser("list", help="the keys (never the keys themselves)").set_defaults(func=list_keys)
    cmd = sub.add_parser("revoke", help="revoke a key, at once")
    cmd.add_argument("id", type=_key_id, help="the key's id (admin-keys list shows it)")
    cmd.set_defaults(func=revoke_key)


def add_audit_command(sub: Any) -> None:
    cmd = sub.add_parser("audit", help="the audit trail of a user's sessions, newest first")
    cmd.add_argument("--user-id", help="whose (default: everyone's)")
    cmd.add_argument("--limit", type=_limit, default=100, help="rows, up to 10000 (default 100)")
    cmd.set_defaults(func=audit)

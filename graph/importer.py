"""`sessions-api sessions import`: JSON lines in, sessions written in batches, tokens out in order.

On a bad line the import stops: every row before it is written (and its token printed), nothing
from it on is, and the error names the line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from store.models import parse_timestamp, utcnow
from store.sessions import Created, InvalidSession, NewSession, SessionStore, prepare

BATCH = 1000
FIELDS = {
    "user_id", "ip", "user_agent", "created_at", "expires_at", "ended_at", "end_reason", "token"
}  # fmt: skip
REQUIRED = ("user_id", "ip", "created_at", "expires_at")


class ImportStopped(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def parse_row(line: str) -> NewSession:
    """One JSON line; raises InvalidSession naming what is wrong."""
    try:
        row = json.loads(line)
    except ValueError:
        raise InvalidSession("not a JSON object") from None
    if not isinstance(row, dict):
        raise InvalidSession("not a JSON object")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise InvalidSession(f"unknown field(s): {', '.join(unknown)}")
    for name in REQUIRED:
        if not isinstance(row.get(name), str) or not row[name]:
            raise InvalidSession(f"{name} is required (a string)")
    for name in ("user_agent", "ended_at", "end_reason", "token"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise InvalidSession(f"{name} must be a string")

    def when(name: str) -> datetime | None:
        value = row.get(name)
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except ValueError:
            raise InvalidSession(f"{name} is not an ISO 8601 time: {value[:40]!r}") from None

    return NewSession(
        user_id=row["user_id"],
        ip=row["ip"],
        user_agent=row.get("user_agent") or "",
        created_at=when("created_at"),
        expires_at=when("expires_at"),
        ended_at=when("ended_at"),
        end_reason=row.get("end_reason"),
        token=row.get("token"),
    )


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    created: Created
    kept_token: bool  # the row brought its own token (which may already be in use)


async def import_lines(
    store: SessionStore, lines: Iterable[str], emit: Callable[[Created], None]
) -> int:
    """Imports every line; returns how many sessions it wrote. Raises ImportStopped."""
    now = utcnow()
    pending: list[_Row] = []
    kept: dict[str, int] = {}  # token hash -> line, for rows that brought their own token
    total = 0

    async def flush() -> None:
        nonlocal total
        taken = await store.taken_token_hashes(
            [r.created.record.token_hash for r in pending if r.kept_token]
        )
        cut = next((i for i, r in enumerate(pending) if r.created.record.token_hash in taken), None)
        good = pending if cut is None else pending[:cut]
        try:
            await store.write([r.created for r in good], now=now)
        except asyncpg.UniqueViolationError:
            raise ImportStopped(
                good[0].line,
                f"a token of lines {good[0].line}-{good[-1].line} was stored "
                "by another writer meanwhile; none of these lines were imported",
            ) from None
        for row in good:
            emit(row.created)
        total += len(good)
        if cut is not None:
            raise ImportStopped(pending[cut].line, "its token is already in use")
        pending.clear()

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            new = parse_row(line)
            row = _Row(number, prepare(new, now), kept_token=new.token is not None)
        except InvalidSession as exc:
            await flush()
            raise ImportStopped(number, str(exc)) from None
        if row.kept_token:
            earlier = kept.setdefault(row.created.record.token_hash, number)
            if earlier != number:
                await flush()
                raise ImportStopped(number, f"its token repeats line {earlier}'s")
        pending.append(row)
        if len(pending) >= BATCH:
            await flush()
    await flush()
    return total

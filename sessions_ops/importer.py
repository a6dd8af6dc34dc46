"""`sessions-api sessions import`: JSON lines in, sessions written in batches, tokens out in order.

On a bad line the import stops: every row before it is written (and its token printed), nothing
from it on is, and the error names the line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from store.errors import outage_of
from store.models import parse_timestamp, utcnow
from store.sessions import (
    InvalidSession,
    IssuedSession,
    NewSession,
    NotUndone,
    SessionStore,
    prepare,
)

BATCH = 1000
FIELDS = {
    "user_id", "ip", "user_agent", "created_at", "expires_at", "ended_at", "end_reason", "token"
}  # fmt: skip
REQUIRED = ("user_id", "ip", "created_at", "expires_at")
MAX_LINE_BYTES = 4 * 1024 * 1024


class ImportStopped(Exception):
    def __init__(self, line: int, reason: str, *, left: Sequence[str] = ()) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        # Token hashes of sessions a failed batch wrote that its undo could not remove.
        self.left = list(left)


class ImportInterrupted(ImportStopped):
    pass


class LineTooLong(Exception):
    pass


class _Stopped(Exception):
    pass


class ReadFailed(Exception):
    pass


async def lines_of(fd: int, stop: asyncio.Event) -> AsyncIterator[bytes]:
    """The lines of a file descriptor (standard input), without their newlines, until its end
    or until `stop` is set (then it raises _Stopped).

    A daemon thread does the reading, so a read that waits for input never holds up a stop and
    never keeps the process alive.
    """
    loop = asyncio.get_running_loop()
    # The reader waits when it is full. An OSError stands for a failed read.
    chunks: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=16)

    def read() -> None:
        while True:
            try:
                chunk: bytes | OSError = os.read(fd, 1 << 16)
            except OSError as exc:
                chunk = exc
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the import is over (interrupted, or stopped at a bad line)
            if not isinstance(chunk, bytes) or not chunk:
                return

    threading.Thread(target=read, name="import-stdin", daemon=True).start()
    stopped = asyncio.ensure_future(stop.wait())
    try:
        rest = b""
        while True:
            getting = asyncio.ensure_future(chunks.get())
            await asyncio.wait({getting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                getting.cancel()
                raise _Stopped()
            chunk = getting.result()
            if isinstance(chunk, OSError):
                raise ReadFailed(chunk.strerror or str(chunk))
            if not chunk:
                break
            *complete, rest = (rest + chunk).split(b"\n")
            for line in complete:
                if len(line) > MAX_LINE_BYTES:
                    raise LineTooLong()
                yield line
            if len(rest) > MAX_LINE_BYTES:
                raise LineTooLong()
        if rest:
            yield rest
    finally:
        stopped.cancel()


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


def _storage_failure(exc: BaseException | None) -> str:
    dependency = outage_of(exc)
    name = {"redis": "Redis", "postgres": "Postgres"}.get(dependency or "", "storage")
    why = (str(exc) or type(exc).__name__) if exc is not None else "unknown error"
    return f"{name} failed ({why})"


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    created: IssuedSession
    kept_token: bool  # the row brought its own token (which may already be in use)


async def import_lines(
    store: SessionStore, lines: AsyncIterable[bytes], emit: Callable[[IssuedSession], None]
) -> int:
    """Imports every line (UTF-8 JSON); returns how many sessions it wrote. Raises
    ImportStopped, or ImportInterrupted when `lines` stops early: either way every session
    whose token was emitted is stored, and no other."""
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
        except Exception as exc:
            # Storage failed mid-batch: the batch was undone (what could not be, is named).
            cause = exc.__cause__ if isinstance(exc, NotUndone) else exc
            if not isinstance(exc, NotUndone | OSError | TimeoutError) and outage_of(exc) is None:
                raise
            raise ImportStopped(
                good[0].line,
                f"{_storage_failure(cause)}; none of lines {good[0].line}-{good[-1].line} "
                "were imported",
                left=exc.token_hashes if isinstance(exc, NotUndone) else (),
            ) from exc
        for i, row in enumerate(good):
            try:
                emit(row.created)
            except BaseException:
                # Output closed (`| head`): a session whose token was not printed is no use to
                # anyone. Printed tokens and stored sessions stay the same set.
                await store.discard([r.created for r in good[i:]])
                raise
        total += len(good)
        if cut is not None:
            raise ImportStopped(pending[cut].line, "its token is already in use")
        pending.clear()

    number = 0
    iterator = aiter(lines)
    while True:
        number += 1
        try:
            raw = await anext(iterator)
        except StopAsyncIteration:
            break
        except _Stopped:
            # Rows read since the last batch are dropped; every batch before was written whole.
            first_not_imported = pending[0].line if pending else number
            raise ImportInterrupted(first_not_imported, "interrupted") from None
        except ReadFailed as exc:
            await flush()
            raise ImportStopped(number, f"standard input could not be read: {exc}") from None
        except LineTooLong:
            await flush()
            raise ImportStopped(number, f"longer than {MAX_LINE_BYTES} bytes") from None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            await flush()
            raise ImportStopped(number, "not valid UTF-8") from None
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

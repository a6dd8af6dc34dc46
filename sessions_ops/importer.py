"""`sessions-api sessions import`: JSON lines in, sessions written in batches, tokens out in order.

On a bad line the import stops: every row before it is written (and its token printed), nothing
from it on is, and the error names the line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
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
    def __init__(self, line: int, reason: str, *, left: Mapping[str, str] | None = None) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        # Sessions a failed batch wrote that its undo could not remove: token hash -> user id.
        self.left = dict(left or {})


class ImportInterrupted(ImportStopped):
    pass


class LineTooLong(Exception):
    pass


class _Stopped(Exception):
    pass


class ReadFailed(Exception):
    pass


def _read(fd: int, chunks: asyncio.Queue[bytes | OSError], loop: asyncio.AbstractEventLoop) -> None:
    """Runs in a daemon thread: puts what `fd` gives into `chunks` (an OSError for a failed
    read), up to its end (an empty chunk) or until the import is over."""
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


async def _chunks_of(fd: int, stop: asyncio.Event) -> AsyncGenerator[bytes, None]:
    """What a file descriptor gives, until its end or until `stop` is set (then it raises
    _Stopped). A daemon thread does the reading, so a read that waits for input never holds up
    a stop and never keeps the process alive."""
    # The reader waits when it is full. An OSError stands for a failed read.
    chunks: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=16)
    reader = threading.Thread(
        target=_read, args=(fd, chunks, asyncio.get_running_loop()), name="import-stdin"
    )
    reader.daemon = True
    reader.start()
    stopped = asyncio.ensure_future(stop.wait())
    try:
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
                return
            yield chunk
    finally:
        stopped.cancel()


async def lines_of(fd: int, stop: asyncio.Event) -> AsyncIterator[bytes]:
    """The lines of a file descriptor (standard input), without their newlines, until its end
    or until `stop` is set (then it raises _Stopped)."""
    rest = b""
    async with aclosing(_chunks_of(fd, stop)) as chunks:
        async for chunk in chunks:
            *complete, rest = (rest + chunk).split(b"\n")
            for line in complete:
                if len(line) > MAX_LINE_BYTES:
                    raise LineTooLong()
                yield line
            if len(rest) > MAX_LINE_BYTES:
                raise LineTooLong()
    if rest:
        yield rest


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
    issued: IssuedSession
    kept_token: bool  # the row brought its own token (which may already be in use)


def _row(line: int, raw: bytes, now: datetime) -> _Row | None:
    """Line number `line` as a row to write, or None when it is blank. Raises ImportStopped
    naming what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportStopped(line, "not valid UTF-8") from None
    if not text.strip():
        return None
    try:
        new = parse_row(text)
        return _Row(line, prepare(new, now), kept_token=new.token is not None)
    except InvalidSession as exc:
        raise ImportStopped(line, str(exc)) from None


async def _next_line(lines: AsyncIterator[bytes], line: int) -> bytes | None:
    """Line number `line`, or None at the end. Raises ImportStopped naming it if it cannot be
    read, ImportInterrupted once `lines` is stopped."""
    try:
        return await anext(lines)
    except StopAsyncIteration:
        return None
    except _Stopped:
        raise ImportInterrupted(line, "interrupted") from None
    except ReadFailed as exc:
        raise ImportStopped(line, f"standard input could not be read: {exc}") from None
    except LineTooLong:
        raise ImportStopped(line, f"longer than {MAX_LINE_BYTES} bytes") from None


async def _read_rows(lines: AsyncIterable[bytes], now: datetime) -> AsyncIterator[_Row]:
    """The rows of `lines`, numbered from 1 (blank lines count). Raises ImportStopped at the
    first bad line, naming it, and ImportInterrupted, naming the line it was waiting for, when
    `lines` is stopped."""
    iterator = aiter(lines)
    for line in itertools.count(1):
        got = await _next_line(iterator, line)
        if got is None:
            return
        row = _row(line, got, now)
        if row is not None:
            yield row


class _BatchWriter:
    """Writes rows BATCH at a time, emitting each one's session once it is stored."""

    def __init__(
        self, store: SessionStore, now: datetime, emit: Callable[[IssuedSession], None]
    ) -> None:
        self.store = store
        self.now = now
        self.emit = emit
        self.pending: list[_Row] = []
        self.kept: dict[str, int] = {}  # token hash -> line, for rows that brought their own token
        self.total = 0  # sessions written and emitted

    async def add(self, row: _Row) -> None:
        """Queues a row, writing the batch once it is full; a token the import already had
        stops it (after writing the rows before)."""
        if row.kept_token:
            earlier = self.kept.setdefault(row.issued.record.token_hash, row.line)
            if earlier != row.line:
                await self.flush()
                raise ImportStopped(row.line, f"its token repeats line {earlier}'s")
        self.pending.append(row)
        if len(self.pending) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Writes and emits the pending rows up to the first whose token is already stored,
        and stops the import at that one."""
        pending = self.pending
        taken = await self.store.taken_token_hashes(
            [r.issued.record.token_hash for r in pending if r.kept_token]
        )
        cut = next((i for i, r in enumerate(pending) if r.issued.record.token_hash in taken), None)
        good = pending if cut is None else pending[:cut]
        await self._write(good)
        await self._emit(good)
        self.total += len(good)
        if cut is not None:
            raise ImportStopped(pending[cut].line, "its token is already in use")
        pending.clear()

    def first_unwritten(self, reading: int) -> int:
        """The first line not written, when the line being read is `reading`."""
        return self.pending[0].line if self.pending else reading

    async def _write(self, rows: Sequence[_Row]) -> None:
        try:
            await self.store.write([r.issued for r in rows], now=self.now)
        except asyncpg.UniqueViolationError:
            raise ImportStopped(
                rows[0].line,
                f"a token of lines {rows[0].line}-{rows[-1].line} was stored "
                "by another writer meanwhile; none of these lines were imported",
            ) from None
        except Exception as exc:
            # Storage failed mid-batch: the batch was undone (what could not be, is named).
            cause = exc.__cause__ if isinstance(exc, NotUndone) else exc
            if not isinstance(exc, NotUndone | OSError | TimeoutError) and outage_of(exc) is None:
                raise
            raise ImportStopped(
                rows[0].line,
                f"{_storage_failure(cause)}; none of lines {rows[0].line}-{rows[-1].line} "
                "were imported",
                left=exc.owners if isinstance(exc, NotUndone) else None,
            ) from exc

    async def _emit(self, rows: Sequence[_Row]) -> None:
        for i, row in enumerate(rows):
            try:
                self.emit(row.issued)
            except BaseException:
                # Output closed (`| head`): a session whose token was not printed is no use to
                # anyone. Printed tokens and stored sessions stay the same set.
                await self.store.discard([r.issued for r in rows[i:]])
                raise


async def import_lines(
    store: SessionStore, lines: AsyncIterable[bytes], emit: Callable[[IssuedSession], None]
) -> int:
    """Imports every line (UTF-8 JSON); returns how many sessions it wrote. Raises
    ImportStopped, or ImportInterrupted when `lines` stops early: either way every session
    whose token was emitted is stored, and no other."""
    now = utcnow()
    writer = _BatchWriter(store, now, emit)
    rows = _read_rows(lines, now)
    while True:
        # Only the reading is guarded here: the writer's own stops (a token in use, storage
        # failing) leave its batch as it is, and must not flush it again.
        try:
            row = await anext(rows)
        except StopAsyncIteration:
            break
        except ImportInterrupted as exc:
            # Rows read since the last batch are dropped; every batch before was written whole.
            raise ImportInterrupted(writer.first_unwritten(exc.line), "interrupted") from None
        except ImportStopped:
            await writer.flush()  # every row before the bad line is written, and printed
            raise
        await writer.add(row)
    await writer.flush()
    return writer.total

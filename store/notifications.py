"""Postgres LISTEN on `session_events`: the announcement of each session event as its
transaction commits (migration 0005's trigger), from whichever process, host or language wrote
it. One connection of its own per listening process, opened again whenever it drops."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "session_events"
# How the listening connection shows in pg_stat_activity.
APPLICATION = "sessions-api live updates"
# Seconds between two checks that the connection still answers: a connection cut without a
# word (a host gone, a firewall's idle timeout) would otherwise wait for announcements forever.
# One that Postgres closes is noticed at once.
CHECK_INTERVAL = 5.0
# Seconds before opening it again after a failure: the first wait, doubled each time up to the
# last.
RETRY_FIRST = 0.5
RETRY_LAST = 10.0


@dataclass(frozen=True, slots=True)
class Announced:
    """What the announcement of an event says: enough to know who it concerns."""

    seq: int
    type: str
    session_id: str
    user_id: str


def parse(payload: str) -> Announced | None:
    """The announcement, or None if it is not one of migration 0005's."""
    try:
        raw = json.loads(payload)
        return Announced(
            int(raw["seq"]), str(raw["type"]), str(raw["session_id"]), str(raw["user_id"])
        )
    except (ValueError, TypeError, KeyError):
        return None


async def listen_forever(
    url: str,
    *,
    connect_timeout: float,
    on_event: Callable[[Announced], None],
    on_listening: Callable[[bool], None],
) -> None:
    """Calls `on_event` for each announcement until cancelled; `on_listening(True)` each time
    the connection is (again) listening, `on_listening(False)` when it stopped. Announcements
    made while it was not are not heard: `on_listening(True)` is where a caller catches up."""
    delay = RETRY_FIRST

    def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        announced = parse(payload)
        if announced is None:
            log.warning("ignored a notification on %s that is not an event's", CHANNEL)
            return
        on_event(announced)

    while True:
        conn: Any = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(
                url, timeout=connect_timeout, server_settings={"application_name": APPLICATION}
            )
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(CHANNEL, heard)
            log.info("listening for session events")
            delay = RETRY_FIRST
            on_listening(True)
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), CHECK_INTERVAL)
                except TimeoutError:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), connect_timeout)
            raise ConnectionError("the connection was closed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "not listening for session events (%s: %s); trying again in %.1f s",
                type(exc).__name__,
                exc,
                delay,
            )
        finally:
            if conn is not None:
                conn.terminate()
            on_listening(False)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_LAST)
